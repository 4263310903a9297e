"""Ray backend: evaluation jobs as Ray tasks and RL rollouts in Ray actors.

The local in-process backend stays the default; this one is chosen with `--backend ray` and
gives the same results (the same jobs run the same code, see `sim/evaluate.py`).

- `connect(address)` starts a local Ray instance (address None) or joins a cluster (an address
  `HOST:PORT` of a running head, `ray://HOST:PORT` for Ray Client, or `auto`). An address that
  does not answer is a clear error before Ray is asked to wait on it.
- `RayRunner` is an evaluation runner (`evaluate(..., runner=RayRunner())`): one Ray task per job
  (one policy on one chunk of scenarios, run by the batched simulator), the map bank and each
  policy put in the object store once, results yielded as tasks finish. A worker process that
  dies is retried by Ray (`max_retries`); a job's result is taken once, so nothing is lost or
  counted twice; a scenario that raises is an error row with its reason (`run_chunk`). Time
  limits: inside the task the rollout's own watchdog (`EvalConfig.step_timeout`,
  `scenario_timeout`) turns a Python-level hang into "timed out" rows; as a backstop for a hang
  it cannot interrupt (C code holding the GIL), a task still running `job_deadline` seconds
  after it was started is cancelled with its worker killed (`ray.cancel(force=True)`; Ray starts
  a fresh worker for the next task) and its scenarios become "timed out" rows. At most as many
  tasks as the cluster has CPUs are in flight, so that a task's clock starts when it can run.
- `RolloutActors` (used by `train_rl(..., backend="ray")`) holds the RL rows in `workers` actors,
  each a contiguous slice of the rows; the learner stays in the driver and sends weights and the
  pre-drawn action noise each update, so a seed gives the same update as the local backend.

Ray is imported lazily (an optional dependency, docs/architecture.md): nothing here is needed unless the backend is chosen.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from drivesim.distributed import ClusterError

DEFAULT_RETRIES = 3  # re-runs of a task whose worker process died


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("the Ray backend needs ray: pip install -e '.[ray]'") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connect to HOST:PORT of `address` (ray://HOST:PORT or HOST:PORT), so that a wrong
    address fails in seconds with a clear message instead of Ray's long retry loop."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ClusterError(f"Ray address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:10001 or auto")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start its head with "
                           f"`ray start --head --port={port}` on {host}, or drop --address to run a local instance") from None


def connect(address: str | None = None, num_cpus: int | None = None, ship_code: bool | None = None):
    """Initialise Ray once per process: a local instance (`address` None; `num_cpus` caps it) or
    an existing cluster. `ship_code` (default: on for a cluster) sends the drivesim package to
    the workers, so the nodes need only the dependencies installed."""
    ray = _ray()
    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        return ray
    kwargs = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if address is None:
        # Ray renices its workers to 15 by default: on a machine shared with other work (a 2-core
        # CI box running another test) they then starve (a 2 s worker start took 57 s beside two
        # busy processes) and the task deadline cancels healthy tasks. A local instance's
        # workers run at the caller's priority instead.
        kwargs.update(num_cpus=num_cpus, _system_config={"worker_niceness": 0})
    else:
        kwargs["address"] = address
        if ship_code if ship_code is not None else True:
            import drivesim

            kwargs["runtime_env"] = {"py_modules": [str(Path(drivesim.__file__).parent)]}
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"Ray could not {'join ' + address if address else 'start a local instance'}: {exc}") from None
    return ray


def shutdown() -> None:
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()


def _task_setup() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("DRIVESIM_WORKER_THREADS", "1")))


def _remote_chunk():
    ray = _ray()

    @ray.remote(max_retries=DEFAULT_RETRIES, retry_exceptions=False)
    def run_job(chunk, road_index, bank, policy, cfg, expert):
        import copy

        from drivesim.sim.evaluate import run_chunk

        _task_setup()
        chunk = [copy.copy(s) for s in chunk]
        for s, i in zip(chunk, road_index):  # the bank's maps are matched by identity: relink after pickling
            s.road = bank.maps[i]
        return run_chunk(chunk, bank, policy, cfg, expert)

    return run_job


class RayRunner:
    """An evaluation runner (see `sim.evaluate.evaluate`) that runs each job as a Ray task."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = DEFAULT_RETRIES,
                 max_in_flight: int | None = None, grace: float = 60.0):
        self.ray = connect(address, num_cpus)
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight  # tasks running at once (default: the cluster's CPUs)
        self.grace = grace  # s added to a task's deadline (job_deadline)

    def __call__(self, jobs, bank, cfg, expert):
        ray = self.ray
        run_job = _remote_chunk().options(max_retries=self.max_retries)
        bank_ref, expert_ref = ray.put(bank), ray.put(expert)
        policy_refs = {}
        for policy, _ in jobs:
            if id(policy) not in policy_refs:
                policy_refs[id(policy)] = ray.put(policy)
        where = {id(road): i for i, road in enumerate(bank.maps)}
        slots = self.max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)))
        todo, pending = list(range(len(jobs))), {}  # ref -> (job index, start time)

        def submit(i):
            policy, chunk = jobs[i]
            ref = run_job.remote(chunk, [where[id(s.road)] for s in chunk], bank_ref, policy_refs[id(policy)], cfg, expert_ref)
            pending[ref] = (i, time.monotonic())

        while todo or pending:
            while todo and len(pending) < slots:
                submit(todo.pop(0))
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                i, _ = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries used up, or the job itself failed
                    result = _error_rows(jobs[i], f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                yield i, result
            for ref, (i, started) in list(pending.items()):
                limit = job_deadline(cfg, len(jobs[i][1]), self.grace)
                if ref not in ready and limit and time.monotonic() - started > limit:
                    ray.cancel(ref, force=True)  # kills the worker process; Ray starts a new one for the next task
                    del pending[ref]
                    yield i, _error_rows(jobs[i], f"timed out: the Ray task ran past its deadline of {limit:g} s and was "
                                                  "cancelled (its worker killed); see --step-timeout / --scenario-timeout")


def job_deadline(cfg, n: int, grace: float = 60.0) -> float:
    """Seconds a task of `n` scenarios may run before the driver cancels it (0 = never, when
    `scenario_timeout` is off): the rollout's own limit for the chunk and for its one-by-one
    retries, plus `grace` to start."""
    return (n + 1) * cfg.scenario_timeout + grace if cfg.scenario_timeout > 0 else 0.0


def _error_rows(job, why: str) -> list:
    policy, chunk = job
    return [({"policy": policy.name, "scenario": s.name, "map": s.road.name, "status": "error", "error": why}, None)
            for s in chunk]


class _RolloutWorker:
    """A Ray actor holding a slice of the RL rows (a `train.ppo.DrivingRows`: the shared
    `sim.env.DriveEnv` with the vocabulary actions) and a copy of the policy."""

    def __init__(self, rows, il_net, cfg):
        import copy

        from drivesim.train.ppo import DrivingRows

        _task_setup()
        self.env = DrivingRows(rows, il_net.cfg, cfg, tile=False)
        self.il_net, self.net, self.cfg = il_net.eval(), copy.deepcopy(il_net).eval(), cfg

    def run_steps(self, weights, noise):
        self.net.load_state_dict(weights)
        return self.env.run_steps(self.net, self.il_net, noise, self.cfg)

    def rows(self) -> int:
        return self.env.B

    def state_dict(self):
        return self.env.state_dict()

    def load_state_dict(self, d):
        self.env.load_state_dict(d)


class RolloutActors:
    """The RL rows split into `workers` contiguous slices, each in a Ray actor; quacks like
    `train.ppo.DrivingRows` for `collect` (run_steps) and checkpoints (state_dict)."""

    def __init__(self, rows: list, il_net, cfg, workers: int = 2, address: str | None = None, num_cpus: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.ray = connect(address, num_cpus)
        self.B = len(rows)
        workers = min(workers, self.B)
        edges = [round(i * self.B / workers) for i in range(workers + 1)]
        self.bounds = list(zip(edges[:-1], edges[1:]))
        worker = self.ray.remote(num_cpus=1)(_RolloutWorker)
        net_ref = self.ray.put(il_net.cpu())
        self.actors = [worker.remote(rows[a:b], net_ref, cfg) for a, b in self.bounds]
        self.ray.get([a.rows.remote() for a in self.actors])  # wait until every actor has built its rows

    def run_steps(self, net, il_net, noise, cfg) -> dict:
        from drivesim.train.ppo import concat_rows

        weights = self.ray.put({k: v.detach().cpu() for k, v in net.state_dict().items()})
        parts = self.ray.get([actor.run_steps.remote(weights, noise[:, a:b]) for actor, (a, b) in zip(self.actors, self.bounds)])
        device = next(net.parameters()).device
        return _to_device(concat_rows(parts), device)

    def state_dict(self) -> dict:
        return {"ray_shards": self.ray.get([a.state_dict.remote() for a in self.actors]), "bounds": self.bounds}

    def load_state_dict(self, d: dict) -> None:
        if "ray_shards" not in d or [tuple(b) for b in d["bounds"]] != self.bounds:
            where = f"{len(d['bounds'])} Ray workers" if "ray_shards" in d else "the local backend"
            raise ValueError(f"this checkpoint was written by {where}; resume with the same backend and --workers")
        self.ray.get([a.load_state_dict.remote(s) for a, s in zip(self.actors, d["ray_shards"])])

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def _to_device(x, device):
    import torch

    if torch.is_tensor(x):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


def rollout_actors(backend: dict | None):
    """`train_rl`'s `rollouts` for `backend` {"workers": N, "address": ADDR or None, "num_cpus": ...}:
    the rollouts collected in N Ray actors (`RolloutActors`); None: in this process."""
    if backend is None:
        return None
    return lambda rows, il_net, cfg: RolloutActors(rows, il_net, cfg, **backend)
