"""Secured local servers: a SASL (and TLS) Kafka broker and a Redis with an ACL user per process, with throwaway
certificates.

For the security tests, and for a local rehearsal of production settings (docs/security.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sekat.errors import ConfigError
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import StackError
from sekat.localstack.redis_servers import RedisServer
from sekat.redis_acl import ROLES, acl_lines, redis_acl_plan


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, as PEM files (made by openssl)."""

    ca: Path
    cert: Path
    key: Path  # unencrypted PKCS#8
    server_pem: Path  # key then certificate, the form Kafka's PEM keystore reads


def make_tls_files(directory: Path, days: int = 2) -> TlsFiles:
    """Generate a CA and a server certificate signed by it (SAN IP:127.0.0.1, DNS:localhost) with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("openssl is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.crt"))
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", str(days),
         "-subj", "/CN=sekat-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
         "-days", str(days), "-extfile", str(ext)],
    ]
    for step in steps:
        done = subprocess.run([openssl, *step], capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"openssl {step[0]} failed: {done.stderr[-1000:]}")
    server_pem = directory / "server.pem"
    server_pem.write_text(key.read_text() + cert.read_text())
    for private in (ca_key, key, server_pem):
        private.chmod(0o600)
    return TlsFiles(ca, cert, key, server_pem)


def secured_broker(data_dir: Path, port: int, controller_port: int, sasl_port: int, users: dict[str, str], *,
                   tls: TlsFiles | None = None, authorizer: bool = False) -> KafkaBroker:
    """A KRaft broker with a client listener on ``sasl_port`` taking PLAIN and SCRAM-SHA-512 for ``users``.

    ``users`` (name -> password) are PLAIN users in the listener's JAAS entry and SCRAM-SHA-512 credentials
    written into the metadata log at format time (``kafka-storage format --add-scram``). The listener is
    SASL_SSL when ``tls`` is given, else SASL_PLAINTEXT. ``port`` stays a PLAINTEXT listener on loopback for
    the broker's own use (inter-broker, readiness, ACL administration) as principal ``User:ANONYMOUS``.
    With ``authorizer`` the broker checks ACLs (StandardAuthorizer): ANONYMOUS is the only super user and
    every SASL user can do only what an ACL allows.
    """
    for name, password in users.items():
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or '"' in password or "\\" in password:
            raise StackError(f"SASL user {name!r}: names are letters, digits, '.', '_', '-'; passwords have no quotes")
    protocol = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    listener = protocol.lower()
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    props = {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},{protocol}://127.0.0.1:{sasl_port},"
                     f"CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},{protocol}://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,{protocol}:{protocol}",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        f"listener.name.{listener}.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        f"listener.name.{listener}.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    if tls:
        props.update({f"listener.name.{listener}.ssl.keystore.type": "PEM",
                      f"listener.name.{listener}.ssl.keystore.location": str(tls.server_pem)})
    if authorizer:
        props.update({"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                      "super.users": "User:ANONYMOUS", "allow.everyone.if.no.acl.found": "false"})
    scram = [f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]" for name, password in users.items()]
    return KafkaBroker(data_dir, port, controller_port, extra_properties=props, format_args=scram)


def acl_redis(data_dir: Path, port: int, passwords: Mapping[str, str], *, prefix: str = "sekat:",
              users: Mapping[str, str] | None = None, tls: TlsFiles | None = None,
              ops_password: str | None = None) -> RedisServer:
    """A Redis server whose users are those of ``sekat.redis_acl``'s plan, each limited to its keys under ``prefix``
    and its commands, written to ``data_dir/users.acl`` as ``sekat redis-acls`` prints them; the default user is
    off. TLS-only on ``port`` with ``tls``.

    ``passwords`` maps each role (worker, api, admin) to its password, ``users`` a role to its user name
    (``DEFAULT_USERS`` otherwise). With ``ops_password`` there is also a user ``ops`` that may do anything (the
    Redis administrator's, for tests to read ``ACL LOG``). The URL of a user: ``redis://NAME:PASSWORD@127.0.0.1:
    port/0``, or with TLS ``rediss://NAME:PASSWORD@127.0.0.1:port/0?ssl_ca_certs=<tls.ca>``.
    """
    if set(passwords) != set(ROLES):
        raise StackError(f"Redis ACL users: a password for each of {', '.join(ROLES)}")
    try:
        lines = acl_lines(redis_acl_plan(users), prefix, passwords)
    except (ValueError, ConfigError) as exc:
        raise StackError(f"Redis ACL users: {exc}") from None
    if ops_password is not None:
        if not ops_password or any(c.isspace() for c in ops_password):
            raise StackError("Redis ops user: a password without spaces")
        lines.append(f"user ops on >{ops_password} ~* &* +@all")
    data_dir.mkdir(parents=True, exist_ok=True)
    acl_file = data_dir / "users.acl"
    acl_file.write_text("\n".join(["user default off", *lines]) + "\n")
    acl_file.chmod(0o600)
    args = ["--aclfile", str(acl_file)]
    if tls:
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.cert), "--tls-key-file",
                 str(tls.key), "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no"]
    return RedisServer(data_dir, port, extra_args=args)
