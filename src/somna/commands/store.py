"""The commands that keep a store: create it, check and repair it, prepare the model, export and import."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from somna import doctor, minilm, portable, progress
from somna.commands.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, load_embedder, open_stores, print_json
from somna.commands.sync import init_shared
from somna.config import PROJECT_STORE_DIR, Settings
from somna.embeddings import LazyEmbedder, make_embedder
from somna.store import Store


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.path).expanduser().resolve() if args.path else None
    if target is not None and target.name == PROJECT_STORE_DIR and (target.parent / ".git").exists():
        if not (target / ".git").exists():  # `somna init .somna-store` in a project: the project's store
            args.project, args.path = True, str(target.parent)
    if args.project or args.remote:
        return init_shared(args)
    settings = Settings.from_env()
    path = Path(args.path) if args.path else (Path(args.store) if args.store else settings.user_store)
    existed = (path / ".git").exists() and (path / "memory").is_dir()
    store = Store.init(path)
    print(f"{'store already at' if existed else 'created store at'} {store.root}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    memory = open_stores(args)
    ok = True
    reports = []
    model = minilm.configured(Settings.from_env(store=args.store).embedder)
    if not args.json:
        print(f"model {minilm.human(model)}")
    for store in memory.stores.values():
        report = doctor.repair(store) if args.repair else doctor.check(store)
        report["model"] = model
        reports.append(report)
        ok = ok and report["ok"]
        if not args.json:
            print("\n".join(doctor.human_lines(report)))
    if args.json:
        print_json(reports)
    else:
        print("the daemon, the last sleep, the inbox and what needs you: `somna status`")
    return EXIT_OK if ok else EXIT_ERROR


def cmd_model(args: argparse.Namespace) -> int:
    """Load the embedding model once: the first time, its ONNX form is exported to the cache."""
    settings = Settings.from_env(store=args.store)
    if settings.embedder == "none" or settings.embedder.startswith("hash"):
        if args.json:
            print_json({"model": settings.embedder, "ready": settings.embedder != "none", "backend": ""})
        else:
            print(f"SOMNA_EMBEDDER={settings.embedder}: no model to load")
        return EXIT_OK
    embedder = make_embedder(settings.embedder)
    t0 = time.perf_counter()
    ready = isinstance(embedder, LazyEmbedder) and embedder.wait(600)
    took = time.perf_counter() - t0
    info = minilm.configured(settings.embedder)
    out = {
        "model": embedder.name,
        "ready": ready,
        "backend": getattr(embedder, "backend", ""),
        "dimensions": embedder.dim,
        "seconds": round(took, 2),
        "error": getattr(embedder, "error", None),
        # which file runs and where it came from (the model's package, or somna's export in the cache)
        "file": info.get("file"),
        "source": getattr(embedder, "source", "") or info.get("source"),
        "sha256_ok": info.get("sha256_ok"),
    }
    if args.json:
        print_json(out)
    elif ready:
        print(f"{out['model']}: ready on {out['backend']} in {took:.1f} s ({out['dimensions']} dimensions)")
        print(f"  runs {out['source']}")
        if out["sha256_ok"] is not None:
            print("  sha256 of the model file: " + ("ok" if out["sha256_ok"] else "DIFFERS: reinstall somna"))
    else:
        print(f"{out['model']}: unavailable ({out['error']}); somna searches on words alone", file=sys.stderr)
    return EXIT_OK if ready else EXIT_ERROR


def cmd_export(args: argparse.Namespace) -> int:
    memory = open_stores(args)
    if args.bundle:
        with progress.spinner("writing the bundle"):
            out = portable.bundle(memory.store(args.scope), Path(args.bundle))
        if args.json:
            print_json(out)
        else:
            print(
                f"wrote {out['path']}: the store {out['store']} with {out['commits']} commits "
                f"({out['bytes']:,} bytes); `somna import {out['path']} PATH` restores it"
            )
        return EXIT_OK
    if not args.format:
        print(
            "somna export needs --format claude-md|agents-md|cursor-rules, or --bundle FILE", file=sys.stderr
        )
        return EXIT_USAGE
    stores = [memory.store(args.scope)] if args.scope else list(memory.stores.values())
    exported = portable.render(stores, args.format, args.budget)
    if args.output in (None, "-"):
        sys.stdout.write(exported.text)
    else:
        portable.write_text(Path(args.output), exported.text)
        print(
            f"wrote {args.output}: {len(exported.text):,} characters, {exported.shown} of {exported.total} "
            f"memories ({exported.left_out} did not fit, {exported.harmful} left out as harmful)",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    settings = Settings.from_env(store=args.store)
    dest = Path(args.path) if args.path else settings.user_store
    embedder = load_embedder(settings)
    with progress.spinner("cloning the bundle"):
        store = portable.restore(Path(args.file), dest, embedder=embedder)
    try:
        report = progress.sync(store)
        indexed = report["indexed"] or store.index.count()
        print(f"imported {args.file} into {store.root}: {indexed} notes indexed")
    finally:
        store.close()
    return EXIT_OK
