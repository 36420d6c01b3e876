"""The cost model: price the simulator's `action@width` counts with energy tables (`energy`, `data/`),
summarise and plot them by component (`report`, `plots`), and cost them on accelerator scenarios with
ZigZag mappings, memory and area tables (`scenarios/`, `scenario`, `model`, `table` and the rest).
Imports `hwsim.sim`, never `hwsim.app`."""
