"""What can go wrong with the archive, in words for a person (never a UID or a patient name)."""


class PacsError(Exception):
    """The archive could not be reached, refused the login, or could not serve a request."""


class NoFrontalImage(PacsError):
    """A study without a frontal chest radiograph to analyse (lateral only, or no CR/DX image)."""
