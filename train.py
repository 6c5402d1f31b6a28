"""`python train.py scheme=rk4 depth=58` from the repository root (see README)."""

from odenets.train import main

if __name__ == "__main__":
    main()
