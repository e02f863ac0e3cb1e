"""``reprsim data list``: the registered data sources and text domains, and whether they are usable."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="list data sources and text domains")
    parser.add_argument("action", choices=["list"], help="list: show sources and whether they are available")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from reprsim.data.registry import list_sources
    from reprsim.data.text import DOMAINS, list_domains

    sources = list_sources()
    available_text = set(list_domains(available_only=True))
    domains = [
        {
            "name": d.name,
            "description": d.description,
            "available": d.name in available_text,
            "source": d.source,
            "licence": d.licence,
        }
        for d in DOMAINS.values()
    ]
    if args.json:
        print(json.dumps({"sources": sources, "text_domains": domains}, indent=2))
        return 0
    print("Image sources (reprsim.data.load):")
    for s in sources:
        state = "yes" if s["available"] else f"needs {s['needs']}"
        print(f"  {s['name']:<14} {s['description']:<66} available: {state}")
    print("Text domains (reprsim.data.text.load_domain):")
    for d in domains:
        state = "yes" if d["available"] else "no"
        print(f"  {d['name']:<14} {d['description']:<40} {d['licence']:<40} available: {state}")
    return 0
