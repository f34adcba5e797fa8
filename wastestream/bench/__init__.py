"""`wastestream bench`: the full pipeline against the raw limits of its parts and a naive baseline.

See README.md in this directory. Modules: loadgen (MQTT publishers of contract messages),
raw (each service alone), naive (the one-script baseline), run (orchestration, table, plot),
city (the city's load model), citygen (its devices at their rates, over MQTT) and cityrun
(`--city-scale`: that city in real time against the pipeline).
"""
