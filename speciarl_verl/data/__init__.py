"""Datasets: the six fine-grained benchmarks into parquet files that stock verl 0.9.1 reads.

* :mod:`~speciarl_verl.data.adapters`: one reader per benchmark, in the layout its authors
  distribute (each module's docstring gives the layout and the ground-truth naming rule);
* :mod:`~speciarl_verl.data.coop_split` and :mod:`~speciarl_verl.data.hf_source`: CoOp split
  JSONs and Hugging Face copies as alternative sources;
* :mod:`~speciarl_verl.data.builder`: ``build_parquet`` (the Python API behind
  ``speciarl data build``), with :mod:`~speciarl_verl.data.row_schema` defining the row;
* ``classnames/``: the shipped class lists, synonyms and the Stanford Cars make/model table.

Importing this package imports nothing else.
"""
