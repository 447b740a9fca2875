"""Request templates: token requests whose query strings and bodies a definition spells out.

Power Platform's generic OAuth 2 identity provider (`oauth2generic`, "Generic Oauth 2" in
Azure Bot Service and API Management credential manager) describes a provider by
templates instead of RFC 6749 defaults:

    authorizationUrlTemplate + authorizationUrlQueryStringTemplate   (consent URL)
    tokenUrlTemplate   + tokenUrlQueryStringTemplate,   tokenBodyTemplate   (code exchange)
    refreshUrlTemplate + refreshUrlQueryStringTemplate, refreshBodyTemplate (refresh)
    scopeListDelimiter                                                   (joins {Scopes})

The URL templates become the provider's endpoints (`catalog.py`, validated like any
other URL setting). This module renders the query strings and bodies. Placeholders are
`{Name}`:

* well-known ones, filled by the engine for each request (names compared without regard
  to case, and winning over a connection parameter of the same name): `{ClientId}`,
  `{ClientSecret}` (the connector's OAuth client), `{RedirectUrl}`, `{State}` (our
  random single-use state), `{Scopes}` (joined with the delimiter), `{Code}`,
  `{RefreshToken}`, and our extensions `{CodeChallenge}` / `{CodeVerifier}` (PKCE);
* any other name is a connection parameter (`{BigEvalUrl}` finds `BigEvalUrl` or
  `token:BigEvalUrl`, exactly first, then ignoring case), given as template values.

Every value is percent-encoded (RFC 3986 unreserved characters kept), so a value can
neither add a parameter nor a placeholder. A placeholder with no value is refused with
an error naming the placeholder and the template, never a value. A well-known
placeholder that does not apply to the request at hand (`{Code}` in a refresh body,
as some definitions have) renders empty.

PKCE (RFC 7636) and state are ours, whatever the templates say: a query template
without `{State}` gets `state=` appended, one without `{CodeChallenge}` gets
`code_challenge` + `code_challenge_method=S256`, and a token body without
`{CodeVerifier}` gets `code_verifier` appended. Power Platform's templates carry no
PKCE; servers that do not know it ignore the extra parameters (RFC 6749 §3.1, §3.2),
servers that require it (ours in the tests, OAuth 2.1) need them.

Template requests carry client authentication themselves (the body names
`client_id`/`client_secret`): the engine adds none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from functions.oauth.errors import CatalogError

# Settings of a `requestTemplates` provider (catalog `resolve` values) -> template field.
TEMPLATE_SETTINGS: dict[str, str] = {
    "authorization_query_template": "authorization_query",
    "token_query_template": "token_query",
    "token_body_template": "token_body",
    "refresh_query_template": "refresh_query",
    "refresh_body_template": "refresh_body",
}
SCOPE_DELIMITER_SETTING = "scope_delimiter"
# Settings named `param:<name>` are the values of connection-parameter placeholders.
VALUE_PREFIX = "param:"

WELL_KNOWN = (
    "ClientId",
    "ClientSecret",
    "RedirectUrl",
    "State",
    "Scopes",
    "Code",
    "RefreshToken",
    "CodeChallenge",
    "CodeVerifier",
)
_WELL_KNOWN = {name.lower(): name for name in WELL_KNOWN}
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.:-]+)\}")

_LABELS = {
    "authorization_query": "authorization query string",
    "token_query": "token URL query string",
    "token_body": "token body",
    "refresh_query": "refresh URL query string",
    "refresh_body": "refresh body",
}


def _encode(value: str) -> str:
    return quote(value, safe="-._~")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def placeholders(template: str | None) -> list[str]:
    """The placeholder names a template uses, in order."""
    return _PLACEHOLDER.findall(template or "")


def well_known(name: str) -> str | None:
    """The canonical well-known placeholder `name` stands for, if any."""
    return _WELL_KNOWN.get(name.lower())


@dataclass(frozen=True)
class RequestTemplates:
    """A provider's request templates and the connection's values for them.

    `values` may hold secret connection parameters: it is never printed (`repr`) and
    never part of an error message.
    """

    authorization_query: str | None = None
    token_query: str | None = None
    token_body: str | None = None
    refresh_query: str | None = None
    refresh_body: str | None = None
    scope_delimiter: str = " "
    values: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RequestTemplates:
        """Templates from catalog settings (`token_body_template`, `param:<name>`...)."""
        templates = {
            target: str(settings[key])
            for key, target in TEMPLATE_SETTINGS.items()
            if settings.get(key)
        }
        delimiter = settings.get(SCOPE_DELIMITER_SETTING)
        values = {
            key[len(VALUE_PREFIX) :]: _text(value)
            for key, value in settings.items()
            if key.startswith(VALUE_PREFIX) and value is not None
        }
        return cls(
            **templates,
            scope_delimiter=str(delimiter) if isinstance(delimiter, str) and delimiter else " ",
            values=values,
        )

    def template(self, which: str) -> str | None:
        if which not in _LABELS:
            raise ValueError(f"unknown request template {which!r}")
        value: str | None = getattr(self, which)
        return value

    def uses(self, which: str, name: str) -> bool:
        """Whether template `which` has the well-known placeholder `name`."""
        return any(well_known(p) == name for p in placeholders(self.template(which)))

    def missing(self) -> list[str]:
        """Placeholders no connection value fills, as `{Name} (template)`, sorted."""
        problems = set()
        for which in _LABELS:
            for name in placeholders(self.template(which)):
                if well_known(name) is None and self._value(name) is None:
                    problems.add(f"{{{name}}} ({_LABELS[which]})")
        return sorted(problems)

    def check(self) -> None:
        """Refuse templates with a placeholder that nothing will fill."""
        missing = self.missing()
        if missing:
            raise CatalogError(
                "the OAuth request templates name placeholder(s) that no well-known value "
                "or given connection parameter fills: " + ", ".join(missing)
            )

    def _value(self, name: str) -> str | None:
        for candidate in (name, f"token:{name}"):
            if candidate in self.values:
                return self.values[candidate]
        lowered = {key.lower(): value for key, value in self.values.items()}
        for candidate in (name.lower(), f"token:{name.lower()}"):
            if candidate in lowered:
                return lowered[candidate]
        return None

    def render(self, which: str, flow: Mapping[str, str | None]) -> str | None:
        """Template `which` with every placeholder replaced by its encoded value.

        `flow` holds the well-known values of this request (canonical names); one that
        is absent or None renders empty, except `{ClientSecret}`, which is refused:
        sending an empty secret would only fail later and less clearly. Leading `?` or
        `&` of a query string template is dropped. None when there is no such template.
        """
        template = self.template(which)
        if template is None:
            return None

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            known = well_known(name)
            if known is not None:
                value = flow.get(known)
                if value is None and known == "ClientSecret":
                    raise CatalogError(
                        f"the OAuth {_LABELS[which]} template needs {{{name}}}: "
                        "set the connector's OAuth client secret"
                    )
                return _encode(value or "")
            value = self._value(name)
            if value is None:
                raise CatalogError(
                    f"the OAuth {_LABELS[which]} template needs {{{name}}}, "
                    "which is neither a well-known placeholder nor a connection parameter"
                )
            return _encode(value)

        rendered = _PLACEHOLDER.sub(substitute, template)
        return rendered.lstrip("?&") if which.endswith("_query") else rendered


def append_query(url: str, query: str | None) -> str:
    """`url` with `query` (already encoded) added to any query it has."""
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def append_pairs(encoded: str, pairs: Mapping[str, str]) -> str:
    """An encoded query string or form body with `pairs` (raw values) appended."""
    extra = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs.items())
    if not extra:
        return encoded
    return f"{encoded}&{extra}" if encoded else extra


__all__ = [
    "SCOPE_DELIMITER_SETTING",
    "TEMPLATE_SETTINGS",
    "VALUE_PREFIX",
    "WELL_KNOWN",
    "RequestTemplates",
    "append_pairs",
    "append_query",
    "placeholders",
    "well_known",
]
