"""The crowdsourced "Russia Twitter Throttle Dataset" (Viktorov & Evdokimov, CC BY 4.0).

One row per visit of the page https://lynx.pink/is-my-twitter-slow-or-what in
March-May 2021: download speed of a Twitter image, of a control host and of a
host whose name contains ``t.co``, with the visitor's AS (CAIDA data). It is the
crowdsourced data behind Xue et al., "Throttling Twitter: An Emerging Censorship
Technique in Russia", IMC 2021.

``load(dir)`` returns a typed, tidy DataFrame (columns in ``COLUMNS_DOC``);
``summarize(df)`` returns the JSON-ready summary used by ``probe analyze dataset``.
Two rules decide "throttled": the page's own (``page``) and a stricter one
(``ours``, see ``OursRule``). Only rows whose AS is registered in Russia count
in the headline figures (``as_country == "RU"``, CAIDA AS-to-organisation data).

The package holds the loader (``loader``), the two rules (``rules``) and the summary
statistics (``summary``); their public names are offered here.
"""

from .loader import (
    COLUMNS_DOC,
    LANDLINE_ORG_IDS,
    MOBILE_NAME_PATTERN,
    MOBILE_ORG_IDS,
    NAME,
    REQUIRED_COLUMNS,
    classify_access,
    load,
)
from .rules import PAGE_THRESHOLD_KBPS, RULE_DESCRIPTIONS, OursRule, apply_rules
from .summary import ATTRIBUTION, LANDLINE_LIFT, summarize, wilson

__all__ = [
    "ATTRIBUTION", "COLUMNS_DOC", "LANDLINE_LIFT", "LANDLINE_ORG_IDS", "MOBILE_NAME_PATTERN",
    "MOBILE_ORG_IDS", "NAME", "PAGE_THRESHOLD_KBPS", "REQUIRED_COLUMNS", "RULE_DESCRIPTIONS",
    "OursRule", "apply_rules", "classify_access", "load", "summarize", "wilson",
]
