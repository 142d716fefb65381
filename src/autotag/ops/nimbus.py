"""Nimbus' Thrift API, with Storm's exceptions turned into one-line reasons.

streamparse has no activate / deactivate / rebalance commands; Nimbus has them, so autotag
calls them directly (the same Thrift IDL and framed binary transport streamparse uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotag.config import Settings
from autotag.errors import AutotagError, ServiceError


@dataclass(frozen=True)
class TopologyRow:
    """One line of ``autotag topologies``."""

    name: str
    id: str
    status: str
    uptime_secs: int
    workers: int
    executors: int
    tasks: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class NimbusClient:
    """A short-lived Thrift client for the Nimbus of these settings."""

    def __init__(self, settings: Settings, timeout_ms: int = 10_000) -> None:
        self.settings = settings
        self.host = settings.services.host
        self.port = settings.services.port(settings.services.nimbus_port)
        self.timeout_ms = timeout_ms

    def _client(self) -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # paramiko (via streamparse) warns about TripleDES
            from streamparse.util import get_nimbus_client

        try:
            return get_nimbus_client(host=self.host, port=self.port, timeout=self.timeout_ms)
        except Exception as exc:  # noqa: BLE001 - thriftpy2 raises several transport types
            raise ServiceError(
                f"Nimbus at {self.host}:{self.port} is unreachable ({exc or type(exc).__name__}); "
                "is the cluster up? (`autotag cluster up`)"
            ) from exc

    def _call(self, method: str, *args: Any) -> Any:
        from streamparse import thrift

        client = self._client()
        try:
            return getattr(client, method)(*args)
        except thrift.NotAliveException as exc:
            raise AutotagError(f"no running topology named {args[0]!r}") from exc
        except thrift.AlreadyAliveException as exc:
            raise AutotagError(f"a topology named {args[0]!r} is already running") from exc
        except thrift.InvalidTopologyException as exc:
            raise AutotagError(f"invalid topology: {exc.msg}") from exc
        except (OSError, EOFError) as exc:
            raise ServiceError(
                f"Nimbus at {self.host}:{self.port} dropped the connection: {exc}"
            ) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("thriftpy2"):
                raise ServiceError(f"Nimbus at {self.host}:{self.port}: {exc}") from exc
            raise
        finally:
            try:
                client.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead socket may fail; nothing to do
                pass

    # -- queries --------------------------------------------------------------------------
    def cluster_info(self) -> Any:
        return self._call("getClusterInfo")

    def topologies(self) -> list[TopologyRow]:
        info = self.cluster_info()
        return [
            TopologyRow(
                t.name, t.id, t.status, t.uptime_secs, t.num_workers, t.num_executors, t.num_tasks
            )
            for t in sorted(info.topologies, key=lambda t: t.name)
        ]

    def topology(self, name: str) -> TopologyRow:
        for row in self.topologies():
            if row.name == name:
                return row
        raise AutotagError(f"no running topology named {name!r}")

    def topology_info(self, name: str) -> Any:
        return self._call("getTopologyInfo", self.topology(name).id)

    def components(self, name: str) -> dict[str, str]:
        """Component id -> 'spout' | 'bolt', from the submitted topology's structure."""
        topo = self._call("getUserTopology", self.topology(name).id)
        return {
            **{c: "spout" for c in topo.spouts or {}},
            **{c: "bolt" for c in topo.bolts or {}},
        }

    # -- actions --------------------------------------------------------------------------
    def activate(self, name: str) -> None:
        self._call("activate", name)

    def deactivate(self, name: str) -> None:
        self._call("deactivate", name)

    def kill(self, name: str, wait_secs: int = 0) -> None:
        from streamparse import thrift

        self._call("killTopologyWithOpts", name, thrift.KillOptions(wait_secs=wait_secs))

    def rebalance(
        self,
        name: str,
        wait_secs: int = 0,
        workers: int | None = None,
        executors: dict[str, int] | None = None,
    ) -> None:
        from streamparse import thrift

        opts = thrift.RebalanceOptions(wait_secs=wait_secs)
        if workers is not None:
            opts.num_workers = workers
        if executors:
            opts.num_executors = executors
        self._call("rebalance", name, opts)
