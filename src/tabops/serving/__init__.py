"""Serving: the models a process holds (hot swaps included) and the data plane that
validates, scores, shadows, audits and counts every prediction. No HTTP."""
