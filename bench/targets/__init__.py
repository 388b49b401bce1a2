"""The servers under test. Each starts in its own temporary directory on 127.0.0.1 with ports
picked at start, holds the same users and passwords, and is stopped by its own pid."""

from bench.targets.base import USERS, Target, TargetError

__all__ = ["USERS", "Target", "TargetError"]
