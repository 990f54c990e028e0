"""The offline and operator tools behind the `forewarn` command, apart from
the worker: `replay` (the engine over recorded input), `simulate`
(synthetic traffic), `feed` (produce, tail, watch, task reports, simulated
work), `impact` (what a rule change does, replay summaries), `worksim`
(simulated work systems) and `controls` (held work, maintenance windows).
None of them is imported by the worker."""
