"""services/smki_repository: the SMKI Repository with DCC Boxed's certificate look-up interface."""
