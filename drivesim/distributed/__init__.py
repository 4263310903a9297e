"""Scale-out backends (Ray) for evaluation suites and RL rollouts; the local backend is the default.

Only the command-line options live here; `ray_backend` (which imports Ray) is loaded when chosen.
"""


class ClusterError(RuntimeError):
    """The Ray cluster could not be reached or started."""


def add_backend_arguments(p, what: str, workers: bool = False) -> None:
    """--backend, --address, --ray-cpus (and --workers) on an argparse parser."""
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help=f"local (default: this process) or ray: {what}")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --backend ray: a running Ray cluster (HOST:PORT of its head, ray://HOST:10001 or auto); "
                        "default: start a local Ray instance")
    p.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="with --backend ray and no --address: CPUs of the local Ray instance (default: all)")
    if workers:
        p.add_argument("--workers", type=int, default=2, metavar="N",
                       help="with --backend ray: rollout actors, each holding a slice of the rows (default 2)")


def backend_options(args) -> dict | None:
    """None for the local backend, else the keyword arguments of the Ray backend; SystemExit on
    options that need --backend ray."""
    if getattr(args, "backend", "local") != "ray":
        if getattr(args, "address", None):
            raise SystemExit("error: --address needs --backend ray")
        return None
    opts = {"address": args.address, "num_cpus": args.ray_cpus}
    if hasattr(args, "workers"):
        opts["workers"] = args.workers
    return opts
