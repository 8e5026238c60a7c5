"""``sekat apikey create|list|disable``: the agency API's keys, kept in Redis (only their hashes)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import orjson

from sekat.cli.command import add_command, add_group
from sekat.settings import Settings


def cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.api.keys import ApiKeyStore, parse_scopes
    from sekat.blocklist.store import BlocklistStore

    async def go() -> int:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        keys = ApiKeyStore(store.client, settings.redis_prefix)
        try:
            if args.cmd == "create":
                key, token = await keys.create(args.agency or "", parse_scopes(args.scopes), args.institution or "")
                owner = f"institution {key.institution}" if key.institution else key.agency
                print(f"key id {key.key_id} for {owner}, scopes {','.join(key.scopes)}", file=sys.stderr)
                print("this key is shown once; only its hash is stored:", file=sys.stderr)
                print(token)
            elif args.cmd == "list":
                for key in await keys.all():
                    print(orjson.dumps(key.public()).decode())
            elif not await keys.disable(args.key_id):
                print(f"no key with id {args.key_id}", file=sys.stderr)
                return 1
            else:
                logging.getLogger("sekat.apikey").warning("API key %s disabled: refused from its next request",
                                                          args.key_id)
            return 0
        finally:
            await store.close()
    return asyncio.run(go())


def add_apikey(sub: argparse._SubParsersAction) -> None:
    ak_sub = add_group(sub, "apikey", "create, list or disable agency API keys",
                       "Create, list or disable the agency API's keys. Redis keeps each key's hash, agency and "
                       "scopes, never the secret.")
    create = add_command(ak_sub, "create", cmd_apikey, "create a key (printed once; only its hash is stored)",
                         "Create an API key for an agency with the given scopes and print it once: only its hash "
                         "is stored, so a lost key is disabled and a new one created.",
                         reads=("redis_prefix",), needs=("redis",))
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--agency", help="the agency the key files for, e.g. PDRM")
    owner.add_argument("--institution", help="the institution the key speaks for (its BIC8 or operator code, as "
                                             "its commands are keyed); such a key holds only the feedback scope")
    create.add_argument("--scopes", required=True, help="comma-separated: report,confirm,revoke,read,rearm,"
                                                        "appeal,institutions "
                                                        "(agencies) or feedback (institutions)")
    add_command(ak_sub, "list", cmd_apikey, "list keys (never the secrets)",
                "List the API keys as JSON lines (id, agency, scopes, when created, whether disabled); never a secret.",
                reads=("redis_prefix",), needs=("redis",))
    disable = add_command(ak_sub, "disable", cmd_apikey, "disable a key by its id",
                          "Disable an API key by its id: the API refuses it from its next request.",
                          reads=("redis_prefix",), needs=("redis",))
    disable.add_argument("key_id")
