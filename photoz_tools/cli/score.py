"""pz-score: not yet available (delivered by the foundation issue)."""

from photoz_tools.cli.common import main_for, not_yet_available

app = not_yet_available("pz-score", "foundation issue")
main = main_for(app)

if __name__ == "__main__":
    main()
