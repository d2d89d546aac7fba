"""``perf stat`` and ``perf record``: the names of both halves, kept importable from here.

Reading their output (counters, metrics, perf report's symbols) is :mod:`.perf_parse`, no
processes; running them as profilers (availability, the exec wrapper, collecting) is
:mod:`.perf_run`.
"""

from __future__ import annotations

from .perf_parse import COUNTED as COUNTED
from .perf_parse import HIGHER_IS_BETTER as HIGHER_IS_BETTER
from .perf_parse import INFORMATIONAL as INFORMATIONAL
from .perf_parse import MAX_SAMPLES as MAX_SAMPLES
from .perf_parse import NOT_COUNTED as NOT_COUNTED
from .perf_parse import NOT_SUPPORTED as NOT_SUPPORTED
from .perf_parse import SEP as SEP
from .perf_parse import TIME_EVENTS as TIME_EVENTS
from .perf_parse import TIME_NOTE as TIME_NOTE
from .perf_parse import Counter as Counter
from .perf_parse import PerfEventError as PerfEventError
from .perf_parse import PerfParseError as PerfParseError
from .perf_parse import Symbol as Symbol
from .perf_parse import ipc as ipc
from .perf_parse import metric_name as metric_name
from .perf_parse import parse_report as parse_report
from .perf_parse import parse_stat_csv as parse_stat_csv
from .perf_parse import readings as readings
from .perf_parse import stat_summary as stat_summary
from .perf_parse import symbols_table as symbols_table
from .perf_run import EXITSTATUS_COST as EXITSTATUS_COST
from .perf_run import EXITSTATUS_FLAGS as EXITSTATUS_FLAGS
from .perf_run import EXITSTATUS_NAME as EXITSTATUS_NAME
from .perf_run import EXITSTATUS_SOURCE as EXITSTATUS_SOURCE
from .perf_run import SH_NOTE as SH_NOTE
from .perf_run import SH_READ as SH_READ
from .perf_run import SH_WRITE as SH_WRITE
from .perf_run import PerfRecord as PerfRecord
from .perf_run import PerfStat as PerfStat
from .perf_run import unavailable_reason as unavailable_reason
