"""Hourly microgrid data: the deterministic synthetic generator and loaders for the user's own files."""

from sb3_microgrid.data.io import (
    DataValidationError,
    load_data,
    load_series,
    load_sessions,
    validate_series,
    validate_sessions,
)
from sb3_microgrid.data.synthetic import (
    CLIMATE_PARAMS,
    LOAD_PROFILE_PARAMS,
    SERIES_COLUMNS,
    SESSION_COLUMNS,
    SPLITS,
    MicrogridData,
    SiteProfile,
    generate,
    generate_series,
    generate_sessions,
    site_profile,
    split_days,
)

__all__ = [
    "CLIMATE_PARAMS",
    "LOAD_PROFILE_PARAMS",
    "SERIES_COLUMNS",
    "SESSION_COLUMNS",
    "SPLITS",
    "DataValidationError",
    "MicrogridData",
    "SiteProfile",
    "generate",
    "generate_series",
    "generate_sessions",
    "load_data",
    "load_series",
    "load_sessions",
    "site_profile",
    "split_days",
    "validate_series",
    "validate_sessions",
]
