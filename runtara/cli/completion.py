"""``completion``: a bash completion script for every command and its flags.

The script is generated from the commands' own parsers, so it completes
exactly what they accept: command names, each command's flags, the values of
flags and arguments that have a fixed set of them (``--status``, a signal's
kind), and file names elsewhere. It is plain bash: a Tab press runs no Python.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence

from runtara.cli import common

FUNCTION = "_runtara_core"


def completion(argv: Sequence[str], commands: Mapping[str, Callable[[Sequence[str]], int]]) -> int:
    parser = common.command_parser(
        "completion",
        "Print a shell completion script for runtara-core. To load it in every "
        f'bash session, add to ~/.bashrc: eval "$({common.PROG} completion bash)"',
    )
    parser.add_argument(
        "shell",
        choices=["bash"],
        help="the shell (zsh reads the bash script after `autoload -U bashcompinit && "
        "bashcompinit`)",
    )
    parser.parse_args(argv)
    print(bash_script({name: common.parser_of(run) for name, run in commands.items()}))
    return 0


def bash_script(parsers: Mapping[str, common.Parser]) -> str:
    """The completion function for ``parsers`` (command name to its parser), and
    the ``complete`` line that binds it to ``runtara-core``."""
    names = " ".join(parsers)
    flags = []
    values = []
    positionals = []
    for name, parser in parsers.items():
        options = [option for action in parser.arguments for option in action.option_strings]
        flags.append(f"        {name}) words={_quoted(options)} ;;")
        for action in parser.arguments:
            if action.choices is None:
                continue
            if action.option_strings:
                cases = "|".join(f'"{name} {option}"' for option in action.option_strings)
                values.append(f"        {cases}) words={_quoted(action.choices)} ;;")
            else:
                positionals.append(f"        {name}) words={_quoted(action.choices)} ;;")
    return "\n".join(
        [
            f"# bash completion for {common.PROG}: {common.PROG} completion bash",
            f"{FUNCTION}() {{",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            "    local command=serve words=",
            "    if ((COMP_CWORD == 1)) && [[ $cur != -* ]]; then",
            f'        COMPREPLY=($(compgen -W {shlex.quote(names)} -- "$cur"))',
            "        return",
            "    fi",
            f'    case " {names} " in *" ${{COMP_WORDS[1]}} "*) command="${{COMP_WORDS[1]}}" ;; esac',
            '    case "$command $prev" in',
            *values,
            "    esac",
            "    if [[ -z $words && $cur == -* ]]; then",
            '        case "$command" in',
            *flags,
            "        esac",
            "    elif [[ -z $words && $prev != -* ]]; then",
            '        case "$command" in',
            *positionals,
            "        esac",
            "    fi",
            '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            "}",
            f"complete -o default -F {FUNCTION} {common.PROG}",
        ]
    )


def _quoted(words: Iterable[object]) -> str:
    return shlex.quote(" ".join(str(word) for word in words))
