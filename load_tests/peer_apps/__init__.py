"""The peers of ``load_tests.peers``: the same blocklist job written as a plain app on other stacks.

Each module is a program of its own (``python -m load_tests.peer_apps.<name> CONFIG_JSON``) that drains the
benchmark's input topics under its own consumer group and writes its commands to its own topic. ``job`` is
the job they share; it imports nothing from Sekat, so a peer runs in a virtualenv without it.
"""
