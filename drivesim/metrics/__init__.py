"""Closed-loop metrics: collisions, drivable area, driving direction, TTC, progress, comfort,
speed limit, and the NAVSIM PDMS / nuPlan scores (definitions: docs/definitions.md, score.METRICS)."""

from drivesim.metrics.accumulator import MetricAccumulator, MetricConfig
from drivesim.metrics.collisions import CollisionClass, CollisionType, ego_overlaps
from drivesim.metrics.drivable import max_corner_distance
from drivesim.metrics.proposals import ProposalConfig, score_proposals
from drivesim.metrics.score import METRICS, nuplan_score, pdms, register
from drivesim.metrics.ttc import TTCConfig, ttc_constant_velocity

__all__ = ["MetricAccumulator", "MetricConfig", "CollisionClass", "CollisionType", "ego_overlaps", "max_corner_distance",
           "ProposalConfig", "score_proposals", "METRICS", "nuplan_score", "pdms", "register", "TTCConfig",
           "ttc_constant_velocity"]
