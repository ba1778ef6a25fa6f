"""sdss"""
