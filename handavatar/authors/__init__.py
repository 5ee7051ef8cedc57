"""The authors' released files (lbs_weights.pth, pairof.ckpt, latest.tar of the published HandAvatar code) read into
this project's formats and written back (docs/fidelity.md): `python -m handavatar.authors --help`."""

from handavatar.authors.files import FIELD_SETTINGS, export_authors, import_authors, published_field_settings
from handavatar.authors.keymap import avatar_state_from_authors, avatar_to_authors, field_from_authors, field_to_authors

__all__ = ["import_authors", "export_authors", "published_field_settings", "FIELD_SETTINGS", "field_from_authors",
           "field_to_authors", "avatar_state_from_authors", "avatar_to_authors"]
