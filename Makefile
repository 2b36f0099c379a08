# Two commands on a fresh machine: `make run` and `make test` (see README.md).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint demo bench clean

$(BIN)/python:
	@PY=$$(scripts/find-python) || exit 1; echo "Using $$PY"; $$PY -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py serve

# ruff and mypy, then every test on SQLite; then, when MM_TEST_DATABASE_URL names a PostgreSQL server,
# the database tests again on PostgreSQL (the multi-process tests already run there when
# MM_TEST_REDIS_URL is set too). mypy imports the settings, so it gets the tests' throw-away data dir.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MM_DATA_DIR=var/test $(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if [ -n "$$MM_TEST_DATABASE_URL" ]; then \
	  echo "== the database tests again, on PostgreSQL"; \
	  MM_TEST_DB=postgres $(BIN)/python -m pytest --ignore=tests/browser --ignore=tests/test_kill_worker.py \
	    --ignore=tests/test_scale_out.py $(PYTEST_ARGS); \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MM_DATA_DIR=var/test $(BIN)/mypy

# The app against the fake Civitai and Hugging Face (tests/upstream), with a demo model folder.
demo: $(STAMP)
	@mkdir -p var/demo/models/checkpoints var/demo/models/loras var/demo/models/vae var/demo/models/upscale_models
	$(BIN)/python manage.py migrate --noinput
	@rm -f var/demo/upstream.env; $(BIN)/python manage.py fakeupstream --env-file var/demo/upstream.env & \
	  trap "kill $$! 2>/dev/null" EXIT; \
	  while [ ! -s var/demo/upstream.env ]; do sleep 0.2; done; \
	  env $$(cat var/demo/upstream.env) MM_COMFYUI_PATH= \
	  MM_MODEL_ROOTS="checkpoints=var/demo/models/checkpoints;loras=var/demo/models/loras;vae=var/demo/models/vae;upscale_models=var/demo/models/upscale_models" \
	  $(BIN)/python manage.py serve

bench: $(STAMP)
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/library_page.py
	$(BIN)/python bench/download.py
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) var/test .pytest_cache
