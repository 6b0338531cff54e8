"""`python -m runtime node BUNDLE --rank R`: the same as `robustdice-node`."""

from runtime._cli import main

if __name__ == "__main__":
    main()
