"""Algorithm logic shared by several of the package's algorithms (as ``sb3_contrib.common``): the prioritized-replay
set-up of ``PerSAC`` / ``PerTD3`` and the epsilon-random actions of ``EpsilonSAC`` / ``EpsilonTD3``."""
