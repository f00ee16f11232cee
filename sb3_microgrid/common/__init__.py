"""Logic shared across the package (as ``sb3_contrib.common``): the prioritized-replay set-up of ``PerSAC`` /
``PerTD3``, the epsilon-random actions of ``EpsilonSAC`` / ``EpsilonTD3``, the restricted unpickler of saved
models (``safe_pickle``), the strict-JSON values of written files (``json_values``), files written atomically
(``files``), range checks of numeric arguments (``arguments``) and YAML that refuses repeated keys (``yaml_files``)."""
