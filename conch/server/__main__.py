"""`python -m conch.server --model results/merged/default/model` starts the server and keeps it running.

Several models (merged, or base + LoRA adapter): `python -m conch.server --config serve.yaml` (see
conch/server/settings.py for the file's format). The API key, if any, is read from the environment variable
named by --api-key-env (default CONCH_API_KEY), never from the command line, so it stays out of `ps` and logs.
"""

import argparse
import logging
import os
import sys

from conch.server.settings import ServeConfigError, load_settings, single_model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conch.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model directory: a merged model, or the base model with --adapter")
    source.add_argument("--config", help="YAML file listing several models (see conch/server/settings.py)")
    parser.add_argument(
        "--adapter", help="LoRA adapter directory, applied to --model by peft without merging"
    )
    parser.add_argument("--name", default="conch", help="model name clients pass as `model` (with --model)")
    parser.add_argument(
        "--template",
        help="the LLaMA-Factory template the model was trained with (with --model): enables tools and "
        "reasoning output (docs/serving.md)",
    )
    parser.add_argument("--default-system", help="the training's default_system (with --template)")
    parser.add_argument("--tool-format", help="the training's tool_format, if it set one (with --template)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-new-tokens", type=int, help="cap on max_tokens (default 128)")
    parser.add_argument(
        "--max-batch-size", type=int, help="requests generating together per model (default 16)"
    )
    parser.add_argument("--max-queue", type=int, help="queued requests before new ones get 503 (default 64)")
    parser.add_argument(
        "--api-key-env",
        default="CONCH_API_KEY",
        help="environment variable holding the API key; unset or empty: no key required",
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads per engine process (default: torch's choice)"
    )
    parser.add_argument("--rag-index", help="RAG index directory: adds the /v1/rag/ endpoints")
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="do not log a line per request (benchmarks)",
    )
    return parser.parse_args(argv)


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
    limits = dict(
        max_new_tokens=args.max_new_tokens,
        max_batch_size=args.max_batch_size,
        max_queue=args.max_queue,
        threads=args.threads,
    )
    try:
        chat_format = {
            "template": args.template,
            "default_system": args.default_system,
            "tool_format": args.tool_format,
        }
        if args.config:
            if args.adapter or any(chat_format.values()):
                sys.exit(
                    "--adapter, --template, --default-system and --tool-format go with --model; in a "
                    "--config file, give each model its own keys"
                )
            settings = load_settings(args.config, **limits)
        else:
            settings = single_model(args.model, args.name, args.adapter, chat_format, **limits)
    except ServeConfigError as exc:
        sys.exit(f"conch.server: {exc}")
    api_key = os.environ.get(args.api_key_env) or None
    logging.getLogger("conch.server").info(
        "API key %s", f"required (from ${args.api_key_env})" if api_key else "not required"
    )

    # Imported only now: torch and transformers take seconds, and argument mistakes should not wait for them.
    import uvicorn

    from conch.server.app import create_app

    failed = []

    def stop_on_load_failure() -> None:
        failed.append(True)
        server.should_exit = True

    app = create_app(
        settings, api_key=api_key, rag_index=args.rag_index, on_load_failure=stop_on_load_failure
    )
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, access_log=args.access_log))
    logging.getLogger("uvicorn.access").addFilter(drop_query_string)  # after uvicorn set its logging up
    server.run()
    if failed:
        sys.exit("conch.server: loading the models failed (see the log above)")


if __name__ == "__main__":
    main()
