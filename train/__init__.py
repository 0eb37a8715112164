"""`tokdyn train`: fine-tune a LLaVA-OneVision-family model to answer from the streaming memory, on Ray Train.

    config.py      TrainConfig: YAML -> dataclasses (model init, freeze, data, memory formats, optimiser, ...)
    model.py       load / build the model, freeze parts, grad-enabled vision path, architecture checks
    memory.py      frame tokens -> memories through the pipeline's streaming compressors (or "full" tokens)
    objective.py   the loss: the serving prompt + memory + answer, cross-entropy on answer tokens
    scene_data.py  procedural scenes -> cached memories + questions (frozen vision tower: encoded once)
    jsonl.py       a user's labelled videos (JSONL) -> examples, bad rows named
    data.py        the pools a worker trains and evaluates on
    warmup.py      optional per-cell vision warm-up on scene labels
    evaluate.py    held-out accuracy by greedy generation (the serving path) + is_correct
    checkpoint.py  training state (weights, optimiser, step, RNGs) in a checkpoint directory
    loop.py        the per-worker loop and the TorchTrainer shell (run_training)
"""
