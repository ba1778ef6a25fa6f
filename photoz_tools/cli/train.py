"""pz-train: not yet available (delivered by the CNN issue)."""

from photoz_tools.cli.common import main_for, not_yet_available

app = not_yet_available("pz-train", "CNN issue")
main = main_for(app)

if __name__ == "__main__":
    main()
