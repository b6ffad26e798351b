"""Audio: WAV I/O, resampling, spectrograms, log-mel features and pitch detection."""
