"""Standard gymnasium environments over the simulator: `drivesim/Drive-v0` (envs/drive.py),
registered when `drivesim` is imported."""

ENV_ID = "drivesim/Drive-v0"


def register_envs() -> None:
    """Register `drivesim/Drive-v0` with gymnasium (once; nothing when gymnasium is missing)."""
    try:
        import gymnasium
    except ImportError:
        return
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point="drivesim.envs.drive:DriveGymEnv",
                           vector_entry_point="drivesim.envs.drive:make_vector_env")
