"""`python -m conch.server --model results/merged/default/model` starts the server and keeps it running.

Several models (merged, or base + LoRA adapter): `python -m conch.server --config serve.yaml` (see
conch/server/settings.py for the file's format). The API key, if any, is read from the environment variable
named by --api-key-env (default CONCH_API_KEY), never from the command line, so it stays out of `ps` and logs.
"""

import logging
import os
import sys

from conch.server import cli
from conch.server.settings import ServeConfigError


def parse_args(argv=None):
    """The command line (conch.server.cli: one flag per serve setting)."""
    return cli.parse_args(argv, description=__doc__)


def drop_query_string(record: logging.LogRecord) -> bool:
    """Access lines name the path only: a query string may hold a whole prompt (GET /generate?prompt=...) or
    a key a client put in the URL by mistake, and neither belongs in a log."""
    if isinstance(record.args, tuple) and len(record.args) == 5:  # client, method, path, version, status
        client, method, path, version, status = record.args
        record.args = (client, method, str(path).split("?", 1)[0], version, status)
    return True


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = cli.settings_from_args(args)
    except ServeConfigError as exc:
        sys.exit(f"conch.server: {exc}")
    api_key = os.environ.get(settings.api_key_env) or None
    logging.getLogger("conch.server").info(
        "API key %s", f"required (from ${settings.api_key_env})" if api_key else "not required"
    )

    # Imported only now: torch and transformers take seconds, and argument mistakes should not wait for them.
    import uvicorn

    from conch.server.app import create_app

    failed = []

    def stop_on_load_failure() -> None:
        failed.append(True)
        server.should_exit = True

    app = create_app(
        settings, api_key=api_key, rag_index=settings.rag_index, on_load_failure=stop_on_load_failure
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, access_log=settings.access_log)
    )
    logging.getLogger("uvicorn.access").addFilter(drop_query_string)  # after uvicorn set its logging up
    server.run()
    if failed:
        sys.exit("conch.server: loading the models failed (see the log above)")


if __name__ == "__main__":
    main()
