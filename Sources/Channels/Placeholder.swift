// Channels: filled in by the channels work (issue 5).
