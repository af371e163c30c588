"""The trainer: model, data streaming from the SIRST-5K store, training loop and evaluation."""
