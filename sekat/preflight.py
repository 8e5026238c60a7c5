"""Start-up check of the credentials in ``SEKAT_*``: a refusal stops the process, naming the setting.

Without this, a wrong SASL password or Redis ACL password shows up as a Kafka
client retrying "Unable to bootstrap" forever, or as a traceback deep inside a
worker. ``check`` opens one connection to the first reachable Kafka bootstrap
server (SASL handshake and TLS included) and pings Redis with the configured
user, then closes both. What it reports:

- refused credentials, an unsupported SASL mechanism, a TLS certificate that
  does not verify, a TLS/plaintext mismatch: ``ConfigError`` naming the
  setting (permanent; retrying cannot help);
- a server that does not answer: a warning, and start-up goes on (transient;
  the worker and the API retry and report it in /healthz and metrics).

Messages never include a password or a URL's credentials.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from sekat.errors import ConfigError
from sekat.settings import Settings

log = logging.getLogger(__name__)


async def check_kafka(settings: Settings, timeout: float = 10.0) -> None:
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
    from aiokafka.protocol.metadata import MetadataRequest

    config = settings.aiokafka_config()
    config.pop("bootstrap_servers")
    unreachable = []
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), client_id=f"{settings.app_id}-preflight",
                            request_timeout_ms=int(timeout * 1000), **config),  # type: ignore[arg-type]
                timeout)
        except SaslAuthenticationFailed:
            raise ConfigError("SEKAT_KAFKA_SASL_PASSWORD", f"Kafka at {server.strip()} refused SASL user "
                              f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): wrong user name "
                              "or password (SEKAT_KAFKA_SASL_USERNAME / SEKAT_KAFKA_SASL_PASSWORD)") from None
        except UnsupportedSaslMechanismError:
            raise ConfigError("SEKAT_KAFKA_SASL_MECHANISM", f"Kafka at {server.strip()} does not accept "
                              f"{settings.kafka_sasl_mechanism}") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError("SEKAT_KAFKA_SSL_CAFILE", f"Kafka at {server.strip()}: TLS certificate not trusted "
                              f"({exc.verify_message}); give the CA bundle in SEKAT_KAFKA_SSL_CAFILE") from None
        except ssl.SSLError as exc:
            raise ConfigError("SEKAT_KAFKA_SECURITY_PROTOCOL", f"Kafka at {server.strip()}: TLS handshake failed "
                              f"({exc.reason}); is the listener {settings.kafka_security_protocol}?") from None
        except (OSError, KafkaError, asyncio.TimeoutError) as exc:
            if _closed_by_peer(exc) and await _tcp_open(host, int(port), timeout):
                # The port answers but the Kafka handshake did not: TLS spoken to a plain listener or the reverse.
                raise ConfigError("SEKAT_KAFKA_SECURITY_PROTOCOL", f"Kafka at {server.strip()} accepted the "
                                  f"connection but closed it during the {settings.kafka_security_protocol} "
                                  "handshake; is that the listener's protocol?") from None
            unreachable.append(f"{server.strip()} ({type(exc).__name__})")
            continue
        try:
            # A SASL listener spoken to without SASL (or the reverse) closes the connection at the first request.
            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
        except (OSError, KafkaError, asyncio.TimeoutError) as exc:
            raise ConfigError("SEKAT_KAFKA_SECURITY_PROTOCOL", f"Kafka at {server.strip()} closed the connection "
                              f"({type(exc).__name__}); is the listener {settings.kafka_security_protocol}?") from None
        finally:
            conn.close()
        return
    log.warning("Kafka did not answer at %s; starting anyway, clients retry", ", ".join(unreachable))


def _closed_by_peer(exc: BaseException) -> bool:
    """The broker hung up during the handshake (not a timeout): how a protocol mismatch shows."""
    from aiokafka.errors import IllegalSaslStateError, KafkaConnectionError

    return (isinstance(exc, (ConnectionResetError, IllegalSaslStateError))
            or (isinstance(exc, KafkaConnectionError) and "closed" in str(exc)))


async def _tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def check_redis(settings: Settings, timeout: float = 10.0) -> None:
    """The worker's and the CLI's Redis, ``SEKAT_REDIS_URL``."""
    await _check_redis_url(settings.redis_url, "SEKAT_REDIS_URL", timeout)


async def check_api_redis(settings: Settings, timeout: float = 10.0) -> None:
    """The agency API's Redis: ``SEKAT_API_REDIS_URL``, or ``SEKAT_REDIS_URL`` when that is empty."""
    url, setting = settings.api_redis()
    await _check_redis_url(url, setting, timeout)


async def _check_redis_url(url: str, setting: str, timeout: float) -> None:
    """Open one connection to ``url`` and PING; a refusal raises ``ConfigError`` naming ``setting``."""
    from redis.exceptions import (
        AuthenticationError,
        AuthorizationError,
        RedisClusterException,
        RedisError,
        ResponseError,
    )

    from sekat.blocklist.connection import async_client

    # The one way to a Redis client: a redis+cluster:// URL gets the cluster client here too.
    client = async_client(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        await client.ping()
    except (AuthenticationError, AuthorizationError) as exc:
        raise ConfigError(setting, f"Redis refused the credentials ({_first_word(exc)}): give the ACL "
                          "user and password as redis[s]://user:password@host:port/db") from None
    except ResponseError as exc:
        if _first_word(exc) in ("NOAUTH", "WRONGPASS", "NOPERM"):
            raise ConfigError(setting, f"Redis refused the credentials ({_first_word(exc)}): give the ACL "
                              "user and password as redis[s]://user:password@host:port/db") from None
        raise
    except (RedisError, RedisClusterException, OSError) as exc:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            raise ConfigError(setting, "Redis TLS certificate not trusted: add ?ssl_ca_certs=/path/ca.pem "
                              "to the rediss:// URL") from None
        if "SSL" in text or "record layer" in text:
            raise ConfigError(setting, "TLS handshake with Redis failed: rediss:// against a plain "
                              "server, or the reverse?") from None
        log.warning("Redis did not answer (%s); starting anyway, clients retry", type(exc).__name__)
    finally:
        await client.aclose()


def _first_word(exc: Exception) -> str:
    words = str(exc).split()
    return words[0].rstrip(":") if words and words[0].isupper() else type(exc).__name__


def check(settings: Settings, kafka: bool = True, redis: bool = True, timeout: float = 10.0,
          api_redis: bool = False) -> None:
    """Raise ``ConfigError`` if a server refuses the configured credentials; warn if it does not answer.

    ``redis`` checks ``SEKAT_REDIS_URL``, ``api_redis`` the agency API's Redis (``Settings.api_redis``)."""
    async def both() -> None:
        if kafka:
            await check_kafka(settings, timeout)
        if redis:
            await check_redis(settings, timeout)
        if api_redis:
            await check_api_redis(settings, timeout)
    asyncio.run(both())
