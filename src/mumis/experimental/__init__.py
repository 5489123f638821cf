"""Methods kept to reproduce studies, not offered by the product: importing this package registers them."""
from mumis.experimental.mumis_study import MuMisStudy, MuMisStudyConfig, study_loss

__all__ = ["MuMisStudy", "MuMisStudyConfig", "study_loss"]
