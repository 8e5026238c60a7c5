"""The streaming shell: topics, decoding at the edge, and the agents.

An agent takes a batch, decodes it, looks the batch up in one go, asks
``rules`` for decisions, sends commands, and only then lets Faust ack the
batch. Nothing clever lives in an agent.
"""
