"""Environment variables that change how an interpreter, loader or shell behaves: never a worker's to set.

A variable such as ``PYTHONWARNINGS`` (imports a module of its choosing), ``LD_PRELOAD`` (loads a
library into every process), ``BASH_ENV`` (a script every non-interactive bash reads) or
``BROWSER`` (a command line Python's ``webbrowser`` runs) turns "set an environment variable" into
"run this code", on the bot's host for the process backend. The bot's rule
(``hiclaw_bot.flows.worker_env``) refuses them when they are asked for; the process backend drops
them again before it starts a process, in case one was stored before the rule existed.

The list lives here because backends stand alone; the bot extends it (``HICLAW_*``, admins' own).
"""

from __future__ import annotations

DENIED_PREFIXES: tuple[str, ...] = (
    "PYTHON",  # PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS, PYTHONHOME, PYTHONINSPECT, ...
    "LD_", "DYLD_", "GLIBC_", "MALLOC_",  # the dynamic loader and libc
    "NODE_", "NPM_CONFIG_",  # NODE_OPTIONS, NODE_PATH, npm's config (scripts, registry)
    "JAVA_", "_JAVA_", "JDK_",  # JAVA_TOOL_OPTIONS, _JAVA_OPTIONS, JDK_JAVA_OPTIONS
    "PERL5", "PERL_", "PERLLIB", "PERLIO",  # PERL5OPT, PERL5LIB, PERL5DB
    "RUBY", "GEM_", "BUNDLE_",  # RUBYOPT, RUBYLIB, GEM_PATH
    "BASH_",  # BASH_ENV, BASH_FUNC_x%% (exported functions), BASH_XTRACEFD
    "GIT_",  # GIT_SSH_COMMAND, GIT_EXTERNAL_DIFF, GIT_PAGER, GIT_ASKPASS, GIT_CONFIG_*
    "PIP_", "UV_",  # where packages come from
    "OPENSSL_", "SSL_CERT_",  # engines and trust anchors
    "LESS",  # LESSOPEN, LESSCLOSE run commands
)
DENIED_NAMES: frozenset[str] = frozenset({
    # shells' start-up files and parsing
    "ENV", "ZDOTDIR", "PROMPT_COMMAND", "PS4", "IFS", "SHELLOPTS", "BASHOPTS", "CDPATH", "GLOBIGNORE",
    "SHELL", "INPUTRC",
    # commands other programs run
    "BROWSER", "EDITOR", "VISUAL", "PAGER", "MANPAGER", "SYSTEMD_PAGER", "TERMINAL", "SSH_ASKPASS",
    "SUDO_ASKPASS", "SSH_AUTH_SOCK", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
    "TMPDIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
    # where programs and configuration are found
    "PATH", "HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_HOME", "XDG_DATA_DIRS",
})


def denied_by(name: str, prefixes: tuple[str, ...] = DENIED_PREFIXES,
              names: frozenset[str] = DENIED_NAMES) -> str | None:
    """The deny-list entry that refuses ``name`` (``PYTHON*``, ``PATH``), or None.

    Compared upper-cased: a worker may run on a system where case does not separate names, and no
    legitimate variable differs from a denied one by case alone.
    """
    upper = name.upper()
    if upper in names:
        return upper
    for prefix in prefixes:
        if upper.startswith(prefix):
            return f"{prefix}*"
    return None
