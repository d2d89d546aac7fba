"""Each feature is a pytest plugin of its own (issue 12): its options in its own --help group, and
``-p no:<feature>`` switches off that feature's options and fixtures, and nothing else."""

from __future__ import annotations

import pytest

from conftest import run_isolated

GROUPS = {
    "llmperf": ("pytest-llmperf: LLM performance regression testing", "--llmperf-tolerance"),
    "llmperf-llama2c": ("pytest-llmperf llama2.c:", "--llmperf-llama2c-models"),
    "llmperf-profilers": ("pytest-llmperf profilers:", "--llmperf-perf-events"),
    "llmperf-torch": ("pytest-llmperf torch:", "--llmperf-lm-sizes"),
}
FIXTURES = {"llmperf-llama2c": "llama2c", "llmperf-profilers": "llmperf_profile", "llmperf-torch": "torch_lm"}
OPTION_VALUES = {"llmperf-llama2c": "--llmperf-llama2c-models=stories15M",
                 "llmperf-profilers": "--llmperf-perf-events=task-clock",
                 "llmperf-torch": "--llmperf-lm-sizes=tiny"}
ENV = ("LLMPERF_NODE", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")


def _help_sections(text: str) -> dict[str, str]:
    """--help's option groups: heading line -> the lines under it."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def test_help_shows_one_group_per_feature(pytester: pytest.Pytester) -> None:
    result = run_isolated(pytester, "--help", clear=ENV)
    assert result.ret == 0
    sections = _help_sections(result.stdout.str())
    for title, option in GROUPS.values():
        heading = [h for h in sections if h.startswith(title)]
        assert len(heading) == 1, (title, list(sections))
        assert option in sections[heading[0]]
        # and in no other group
        assert [h for h, body in sections.items() if f"  {option}" in body] == heading


@pytest.mark.parametrize("feature", sorted(FIXTURES))
def test_p_no_feature_removes_its_options_and_fixtures_only(pytester: pytest.Pytester, feature: str) -> None:
    others = [f for f in FIXTURES if f != feature]
    pytester.makepyfile(test_fixtures=f"""
        import pytest

        def test_mine(request):
            with pytest.raises(pytest.FixtureLookupError):
                request.getfixturevalue({FIXTURES[feature]!r})

        def test_core_is_there(llmperf):
            assert llmperf is not None

        @pytest.mark.parametrize("name", {[FIXTURES[f] for f in others]!r})
        def test_others_are_there(request, name):
            assert name in request.fixturenames or request._fixturemanager.getfixturedefs(name, request.node)
        """)
    result = run_isolated(pytester, "-p", f"no:{feature}", "-p", "no:cacheprovider", "--llmperf-node=n1",
                          *[OPTION_VALUES[f] for f in others], clear=ENV)
    result.assert_outcomes(passed=4)
    # its options are gone: pytest does not know them
    result = run_isolated(pytester, "-p", f"no:{feature}", OPTION_VALUES[feature], clear=ENV)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: " + OPTION_VALUES[feature] in result.stderr.str()
    # and its section is gone from --help, the others stay
    sections = _help_sections(run_isolated(pytester, "-p", f"no:{feature}", "--help", clear=ENV).stdout.str())
    assert not [h for h in sections if h.startswith(GROUPS[feature][0])]
    for other in ["llmperf", *others]:
        assert [h for h in sections if h.startswith(GROUPS[other][0])]


def test_llama2c_without_the_profilers_still_benches(pytester: pytest.Pytester) -> None:
    """llama2c asks for the profilers' fixture only when it is there: switching the profilers
    off leaves bench working (no profiling, no error)."""
    pytester.makepyfile(test_bench="""
        def test_bench(llama2c):
            binary = llama2c.build("-O2")
            llama2c.bench(binary, llama2c.model("stories260K"), steps=16, mbu=False)
        """)
    result = run_isolated(pytester, "-p", "no:llmperf-profilers", "-p", "no:cacheprovider", "--llmperf-node=n1",
                          "--llmperf-max-time=0.5", "--llmperf-min-rounds=3", "--llmperf-normalize=off",
                          f"--llmperf-cache-dir={pytester.path / 'cache'}", clear=ENV)
    result.assert_outcomes(passed=1)
    assert "tok_per_s" in result.stdout.str()


def test_a_conftest_hook_supplies_the_bandwidth(pytester: pytest.Pytester) -> None:
    """pytest_llmperf_bandwidth answers instead of the probe (a board without a compiler); a
    malformed answer fails the test that needs it with one line."""
    pytester.makeconftest("""
        def pytest_llmperf_bandwidth(config):
            return {"read_GBps": 12.5, "method": "datasheet"}
        """)
    pytester.makepyfile(test_bw="""
        def test_bw(llama2c):
            entry = llama2c.bandwidth()
            assert entry["read_GBps"] == 12.5 and entry["method"] == "datasheet"
        """)
    result = run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=n1", "--llmperf-cc=/nonexistent-cc",
                          clear=ENV)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # a compiler path that is not there is named at once
    result = run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=n1", clear=ENV)
    result.assert_outcomes(passed=1)
    pytester.makeconftest("""
        def pytest_llmperf_bandwidth(config):
            return {"read_GBps": "fast"}
        """)
    result = run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=n1", clear=ENV)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pytest_llmperf_bandwidth hook: expected a dict with read_GBps a positive number*"])


def test_the_features_stay_inert_without_the_core(pytester: pytest.Pytester) -> None:
    """-p no:llmperf (the core off, the features still loaded) runs a session without benchmarks
    as if the plugin were not installed."""
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = run_isolated(pytester, "-p", "no:llmperf", "-p", "no:cacheprovider", clear=ENV)
    result.assert_outcomes(passed=1)
    assert "llmperf: node" not in result.stdout.str()  # no header line of the core


def test_a_suite_of_a_feature_switched_off_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """The llama2.c suite collected with its feature off says so in one line, not with a KeyError."""
    pytester.makepyfile(test_suite="""
        from pytest_llmperf.llama2c.fixtures import selected_models

        def pytest_generate_tests(metafunc):
            metafunc.parametrize("model", selected_models(metafunc.config))

        def test_model(model):
            pass
        """)
    result = run_isolated(pytester, "-p", "no:llmperf-llama2c", "-p", "no:cacheprovider", clear=ENV)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    assert "llmperf: the llmperf-llama2c feature is switched off (-p no:llmperf-llama2c)" in result.stdout.str()
    assert "KeyError" not in result.stdout.str()
    result = run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=n1", clear=ENV)
    result.assert_outcomes(passed=2)


def test_with_the_core_off_benchmark_tests_skip_saying_why(pytester: pytest.Pytester) -> None:
    """-p no:llmperf with the suites' shapes: a test asking for ``llmperf``, one asking for a
    feature's fixture, a suite that parametrizes from the llama2.c session, a marked test: each
    skips with one reason (no 'fixture not found' error, no KeyError, the marker known under
    --strict-markers); a plain test still runs."""
    pytester.makepyfile(test_mixed="""
        import pytest

        def test_plain():
            assert True

        def test_core(llmperf):
            llmperf.record("x", [1.0, 2.0], unit="s")

        def test_feature(llama2c):
            pass

        @pytest.mark.llmperf(max_time=1)
        def test_marked():
            pass
        """)
    pytester.makepyfile(test_generated="""
        from pytest_llmperf.llama2c.fixtures import llama2c_session

        def pytest_generate_tests(metafunc):
            metafunc.parametrize("model", sorted(llama2c_session(metafunc.config).models()))

        def test_model(model):
            pass
        """)
    result = run_isolated(pytester, "-p", "no:llmperf", "-p", "no:cacheprovider", "--strict-markers", "-rs",
                          clear=ENV)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out
    result.assert_outcomes(passed=1, skipped=4)
    assert out.count("pytest-llmperf is switched off (-p no:llmperf): its benchmark tests skip") == 3  # 3 + the module
    assert "test_generated.py: pytest-llmperf is switched off" in out or "api.py" in out
    assert "not found" not in out and "KeyError" not in out and "PytestUnknownMarkWarning" not in out
    result = run_isolated(pytester, "-p", "no:llmperf", "-p", "no:cacheprovider", "-m", "not llmperf", clear=ENV)
    result.assert_outcomes(passed=1, skipped=1, deselected=3)  # the generated module skips at collection
