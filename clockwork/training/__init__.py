"""How the models are made and measured: rendered clocks, evaluation sets, training loops.

The service never imports it."""
