"""pipfresh's table of pip install's options (``pip.options``) against pip's own parser."""

from __future__ import annotations

import optparse

from pip._internal.commands.install import InstallCommand

from pipfresh.pip import options


def _pip_options() -> dict[str, bool]:
    """Every spelling pip install accepts -> whether it takes a value."""
    parser = InstallCommand("install", "Install packages.").parser
    found: dict[str, bool] = {}
    for option in parser._get_all_options():
        assert isinstance(option, optparse.Option)
        for name in [*option._short_opts, *option._long_opts]:
            found[name] = option.takes_value()
    return found


def test_every_pip_option_is_in_the_table_as_pip_reads_it() -> None:
    table = {name: o.valued for o in options.OPTIONS for name in o.names}
    pips = _pip_options()
    assert {n: v for n, v in pips.items() if table.get(n) != v} == {}


def test_the_table_holds_only_pips_options_or_older_pips() -> None:
    pips = _pip_options()
    current = [o for o in options.OPTIONS if not o.legacy]
    assert [o.names for o in current if set(o.names) - set(pips)] == []
    assert [o.names for o in options.OPTIONS if o.legacy and set(o.names) & set(pips)] == []


def test_each_option_is_one_of_pips() -> None:
    parser = InstallCommand("install", "Install packages.").parser
    by_name = {n: o for o in parser._get_all_options() for n in o._short_opts + o._long_opts}
    for option in options.OPTIONS:
        if option.legacy:
            continue
        assert {id(by_name[n]) for n in option.names} == {id(by_name[option.names[0]])}
        assert set(
            by_name[option.names[0]]._short_opts + by_name[option.names[0]]._long_opts
        ) == set(option.names)


def test_concerns_as_the_callers_knew_them() -> None:
    assert options.named(options.LOCAL_BUILD, valued=False) == {
        "--no-use-pep517",
        "--ignore-requires-python",
    }
    assert options.named(options.LOG) == {"--log", "--log-file", "--local-log"}
    assert options.spellings("-r") == {"-r", "--requirement"}
    assert options.UNSUPPORTED["-I"] == "--ignore-installed"


def test_takes_value_reads_abbreviations_as_optparse() -> None:
    assert options.takes_value("--req")
    assert not options.takes_value("--pre")  # an option of its own, not --prefix
    assert options.takes_value("--prefix")
    assert not options.takes_value("--no-deps")
