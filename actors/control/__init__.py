"""The control plane: the controller actor (``controller``) with its stream half (``lifecycle``) and pool half
(``scaling``), the replica pools, the durable table, wiring, and the pure policies (``placement``,
``autoscale``). A new control operation goes here (then one line in ``actors/client/operations.py``)."""
