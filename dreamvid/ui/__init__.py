"""``dreamvid ui``: tune a dream by eye in the browser, then render.

One module per job, so that the page holds no logic and the logic needs no browser:

``controls``  the page's settings table and the config layer its sliders make (pure)
``inputs``    uploads, checked like the CLI's inputs
``preview``   the preview worker: frame k as a render of the frames from k on dreams it (``pipeline.first_frame``)
``jobs``      the job runner: the strip (a render of frames k..k+n), the render, resume
``store``     saved presets (``tomli-w``, read back before they are written)
``names``     the one naming rule for uploads, renders and presets
``studio``    :class:`Studio`: the app's server-side state, composed of the above
``access``    who may reach the page and what it may serve (the working folder rule, ``--auth``)
``page``      the gradio page over a Studio, and :func:`serve`: the only module that imports gradio (when called)
"""

from .access import MissingDependency, check_access, check_available, check_workdir
from .controls import Control, changes, controls, settings_of
from .page import DEFAULT_WORKDIR, build, serve
from .preview import PREVIEW_SIDE, Preview
from .store import preset_text
from .studio import STRIP_SECONDS, Studio

__all__ = ["PREVIEW_SIDE", "STRIP_SECONDS", "DEFAULT_WORKDIR", "Studio", "Preview", "Control", "controls",
           "settings_of", "changes", "preset_text", "build", "serve", "check_available", "check_access",
           "check_workdir", "MissingDependency"]
