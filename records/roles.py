"""The two roles: radiologists diagnose; admins also see the model, monitoring and accounts."""

RADIOLOGIST = "radiologist"
ADMIN = "admin"
ROLES: tuple[str, ...] = (RADIOLOGIST, ADMIN)
