"""The walk: the module tree, and one hooked forward pass per batch that summarizes every module."""

from auditor.walk.recorder import Recorder
from auditor.walk.records import ModuleRecord
from auditor.walk.tree import ModuleNode, ModuleTree

__all__ = ["ModuleNode", "ModuleRecord", "ModuleTree", "Recorder"]
