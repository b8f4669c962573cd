"""``personaevo tiny-model`` (build the project's tiny model), ``personaevo model`` (convert
the pretrained models that ship in packages, list them) and ``personaevo llm`` (ask a
backend one question; serve a backend over the OpenAI HTTP API)."""

from __future__ import annotations

import argparse
import time

from personaevo.cli._common import add_llm_options, console, llm_config_from_args
from personaevo.cli._types import float_at_least, int_at_least, port_number, seed_number
from personaevo.llm.config import LLMConfig
from personaevo.llm.packaged import DTYPES, PACKAGED_MODELS


def cmd_tiny_build(args: argparse.Namespace) -> int:
    from personaevo.llm.tiny import TinyRecipe, build_tiny_model

    overrides = {k: getattr(args, k) for k in ("seed", "steps", "conversations")}
    recipe = TinyRecipe(**{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()

    def progress(step: int, steps: int, loss: float) -> None:
        if step % 50 == 0 or step == steps:
            elapsed = time.perf_counter() - start
            console.print(f"step {step}/{steps}  loss {loss:.3f}  {elapsed:.0f} s")

    report = build_tiny_model(args.out, recipe, progress=progress)
    console.print(
        f"tiny model: {report.parameters:,} parameters, vocabulary {report.vocab_size}, "
        f"{report.tokens_trained:,} tokens, loss {report.loss_first:.2f} -> "
        f"{report.loss_last:.2f}, {report.seconds:.0f} s; saved to {args.out}"
    )
    return 0


def cmd_tiny_path(args: argparse.Namespace) -> int:
    from personaevo.llm.tiny import tiny_model_path

    print(tiny_model_path())
    return 0


def cmd_model_prepare(args: argparse.Namespace) -> int:
    from personaevo.llm.packaged import packaged_model_path

    print(packaged_model_path(args.name, dtype=args.dtype, verify=args.verify))
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    from rich.table import Column, Table

    from personaevo.errors import InputError
    from personaevo.llm.packaged import PACKAGED_MODELS, folder_problem, packaged_model_folder

    table = Table("name", "model", "package", "size", Column("state", overflow="fold"), "note")
    for spec, model in PACKAGED_MODELS.items():
        try:
            folder = packaged_model_folder(spec)
        except InputError:
            state = f"not installed: {model.install}"
        else:
            ready = folder.is_dir() and folder_problem(folder, spec) is None
            state = f"converted: {folder}" if ready else f"installed; converts into {folder}"
        size = f"{model.parameters_millions:.0f} M, {model.folder_megabytes:,.0f} MB"
        table.add_row(
            spec, model.title, f"{model.package}=={model.version}", size, state, model.note
        )
    console.print(table)
    return 0


def _config(args: argparse.Namespace) -> LLMConfig:
    return llm_config_from_args(args) or LLMConfig()


def cmd_llm_ask(args: argparse.Namespace) -> int:
    from personaevo.llm import Message, SamplingParams
    from personaevo.llm.factory import build_llm

    llm = build_llm(_config(args))
    try:
        params = SamplingParams(
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed,
            stop=tuple(args.stop or ()),
        )
        if args.raw:
            completion = llm.complete([" ".join(args.text)], params)[0]
        else:
            turns = [Message(role="system", content=args.system)] if args.system else []
            turns.append(Message(role="user", content=" ".join(args.text)))
            completion = llm.chat([turns], params)[0]
    finally:
        llm.close()
    print(completion.text)
    usage = llm.usage
    console.print(
        f"[dim]{llm.name}: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion "
        f"tokens, {usage.seconds:.2f} s, finish_reason={completion.finish_reason}[/dim]",
        highlight=False,
    )
    return 0


def cmd_llm_serve(args: argparse.Namespace) -> int:
    from personaevo.llm.factory import build_llm
    from personaevo.llm.server import OpenAIServer

    config = _config(args)
    llm = build_llm(config)
    name = args.served_name or config.backend
    server = OpenAIServer(llm, name, host=args.host, port=args.port)
    console.print(
        f"serving {llm.name} as model {name!r} at {server.url} "
        f"(use --llm openai:{server.url} --llm-model {name!r}); Ctrl-C stops",
        highlight=False,
    )
    server.serve_until_interrupted()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    tiny = sub.add_parser("tiny-model", help="build the project's tiny language model")
    tiny_sub = tiny.add_subparsers(dest="tiny_command", required=True)
    build = tiny_sub.add_parser("build", help="train it from scratch (about a minute on 2 cores)")
    build.add_argument("--out", required=True, help="new (or empty) folder for the model")
    build.add_argument(
        "--seed", type=seed_number, help="seed of corpus, tokenizer and training (0)"
    )
    build.add_argument("--steps", type=int_at_least(1), help="optimizer steps")
    build.add_argument(
        "--conversations", type=int_at_least(100), help="corpus size in conversations (>= 100)"
    )
    build.set_defaults(func=cmd_tiny_build)
    path = tiny_sub.add_parser("path", help="print the cached tiny model's folder (build it)")
    path.set_defaults(func=cmd_tiny_path)

    model = sub.add_parser(
        "model", help="pretrained models shipped in packages (smollm2, gemma3-270m)"
    )
    model_sub = model.add_subparsers(dest="model_command", required=True)
    prepare = model_sub.add_parser(
        "prepare",
        help="convert a packaged model into the user cache once, and print its folder",
    )
    prepare.add_argument("name", choices=sorted(PACKAGED_MODELS), help="packaged model")
    prepare.add_argument("--dtype", default="float32", choices=DTYPES, help="weights (float32)")
    prepare.add_argument(
        "--verify", action="store_true", help="re-hash every file of a converted folder"
    )
    prepare.set_defaults(func=cmd_model_prepare)
    listing = model_sub.add_parser("list", help="the packaged models and their state here")
    listing.set_defaults(func=cmd_model_list)

    llm = sub.add_parser("llm", help="ask or serve a language model backend")
    llm_sub = llm.add_subparsers(dest="llm_command", required=True)
    ask = llm_sub.add_parser("ask", help="send one message and print the reply and its cost")
    ask.add_argument("text", nargs="+")
    ask.add_argument("--system", help="system turn")
    ask.add_argument("--raw", action="store_true", help="a raw completion (no chat template)")
    ask.add_argument("--max-tokens", type=int_at_least(1), default=128)
    ask.add_argument("--temperature", type=float_at_least(0.0), default=0.0, help="0: greedy")
    ask.add_argument("--seed", type=seed_number)
    ask.add_argument("--stop", action="append", help="stop string (repeatable)")
    add_llm_options(ask)
    ask.set_defaults(func=cmd_llm_ask)
    serve = llm_sub.add_parser(
        "serve", help="serve a backend over the OpenAI HTTP API (default: smollm2)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000)
    serve.add_argument("--served-name", help="model name clients use (default: the spec)")
    add_llm_options(serve)
    serve.set_defaults(func=cmd_llm_serve)
