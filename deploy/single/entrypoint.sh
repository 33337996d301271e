#!/bin/sh
# Entry point of the single-container image (deploy/Dockerfile, target `single`): the whole
# product in one container for demos, as on a Hugging Face Space.
#
# 1. Bring the embedded stores up to date: migrations, then seed and train every bundled
#    use case that has its data and no champion yet. The image was built with them
#    trained, so this is quick unless a volume was mounted on TABOPS_VAR_DIR or the school
#    data was mounted (TABOPS_DATA_DIRS__SCHOOL).
# 2. `tabops up`: the API (TABOPS_API__PORT, inside the container), the MLflow UI and the
#    web UI, the web UI on $PORT (7860 by default, the port a Space routes to).
#    Arguments given to the container are passed on to `tabops up`.
set -eu

tabops db upgrade
tabops seed --all
tabops train --all --only-missing
exec tabops up --host 0.0.0.0 --ui-port "${PORT:-7860}" --api-port "${TABOPS_API__PORT:-8000}" "$@"
