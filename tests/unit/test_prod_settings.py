"""Prod mode enforces what the settings promise: no anonymous prediction, no weak keys."""

from __future__ import annotations

import pytest

from tabops.config import Settings

PSEUDONYM = {"pseudonym_key": "p" * 32}
STRONG = "Zq3-vL9xR2mK7tW4yB8nC6"


def test_prod_refuses_anonymous_prediction() -> None:
    with pytest.raises(ValueError, match="ANONYMOUS_PREDICT"):
        Settings(env="prod", audit=PSEUDONYM, auth={"anonymous_predict": True})
    assert Settings(env="dev", auth={"anonymous_predict": True}).auth.anonymous_predict


@pytest.mark.parametrize("role", ["admin_key", "predict_key"])
@pytest.mark.parametrize("weak", ["x", "changethis", "a" * 40, "short-key-123"])
def test_prod_refuses_weak_operator_keys(role: str, weak: str) -> None:
    with pytest.raises(ValueError, match=role.upper()):
        Settings(env="prod", audit=PSEUDONYM, auth={role: weak})


def test_prod_accepts_strong_or_unset_keys() -> None:
    settings = Settings(env="prod", audit=PSEUDONYM, auth={"admin_key": STRONG, "predict_key": ""})
    assert settings.auth.admin_key is not None
    assert settings.auth.admin_key.get_secret_value() == STRONG
    assert Settings(env="dev", auth={"admin_key": "x"}).auth.admin_key is not None  # dev: any
