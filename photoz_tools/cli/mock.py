"""pz-mock: not yet available (delivered by the pz-mock issue)."""

from photoz_tools.cli.common import main_for, not_yet_available

app = not_yet_available("pz-mock", "pz-mock issue")
main = main_for(app)

if __name__ == "__main__":
    main()
