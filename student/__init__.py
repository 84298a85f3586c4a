"""student: a compact PyTorch trainer that learns from a ranks file (see the trainer issue)."""
