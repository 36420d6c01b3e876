"""The application: the `hwsim` command line (`cli` and one `*_cli` module per stage), the demo and the
multi-seed study that drive training, export, simulation and cost (`demo*`, `study`, `stages`), the
results ledger, text encoding and the process-pool and Dask runs. Imports `hwsim.cost` and `hwsim.sim`,
never the other way."""
