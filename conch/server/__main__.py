"""`python -m conch.server --model results/merged/default/model` starts the server and keeps it running."""

import argparse

import uvicorn

from conch.server.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m conch.server", description=__doc__)
    parser.add_argument("--model", required=True, help="merged model directory")
    parser.add_argument("--name", default="conch", help="model name clients pass as `model`")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model, args.name, args.max_new_tokens), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
