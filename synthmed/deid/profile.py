"""The confidentiality profile: DICOM PS3.15 Annex E, as a readable action table.

Profile: Basic Application Level Confidentiality Profile (DCM 113100), with the options
  - Retain Patient Characteristics (DCM 113108): sex, age, size, weight, pregnancy and smoking
    status are kept, because the synthetic cohort is conditioned on them;
  - Retain Longitudinal Temporal Information with Modified Dates (DCM 113107): every date is
    shifted by a per-patient offset (keyed, so it is stable across runs and unknown without the
    key); times of day are kept, since without the true date they do not identify anyone.

Action codes (PS3.15 Table E.1-1):
  D  replace with a dummy value (here: the keyed pseudonym where one exists)
  Z  replace with a zero-length value (the attribute is required to be present)
  X  remove
  K  keep
  C  clean: dates are shifted (option 113107); free text cannot be cleaned reliably, so text
     attributes that the standard marks C are removed here (X) - stricter than the standard
  U  replace UID with a keyed, consistent replacement

Beyond the table, the walk applies generic rules (`GENERIC_RULES`), stricter than Annex E's
"attributes not listed are retained": every private element, curve and overlay group is removed;
every UI value that is not a registered DICOM UID (SOP classes, transfer syntaxes, coding
schemes) is replaced; every DA/DT is shifted; every PN and AE is removed; free-text elements
(LO/SH/ST/LT/UT/UC/UN) not on the table in the patient, study, visit and request groups are removed.
"""

from __future__ import annotations

D, Z, X, K, C, U = "D", "Z", "X", "K", "C", "U"

PROFILE_NAME = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
PROFILE_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
OPTIONS = ("Retain Patient Characteristics", "Retain Longitudinal Temporal Information with Modified Dates")

# keyword -> action, after the two options are applied. Grouped as in Annex E's concerns.
ACTIONS: dict[str, str] = {
    # --- patient identity -------------------------------------------------------------
    "PatientName": D,  # -> patient pseudonym
    "PatientID": D,  # -> patient pseudonym
    "IssuerOfPatientID": X,
    "IssuerOfPatientIDQualifiersSequence": X,
    "OtherPatientIDs": X,
    "OtherPatientIDsSequence": X,
    "OtherPatientNames": X,
    "PatientBirthName": X,
    "PatientMotherBirthName": X,
    "PatientBirthDate": Z,  # PatientAge is derived from it first (option 113108)
    "PatientBirthTime": X,
    "PatientAddress": X,
    "PatientTelephoneNumbers": X,
    "PatientTelecomInformation": X,
    "CountryOfResidence": X,
    "RegionOfResidence": X,
    "MilitaryRank": X,
    "BranchOfService": X,
    "MedicalRecordLocator": X,
    "PatientInsurancePlanCodeSequence": X,
    "PatientReligiousPreference": X,
    "PatientPrimaryLanguageCodeSequence": X,
    "ResponsiblePerson": X,
    "ResponsibleOrganization": X,
    "PatientComments": X,
    "PatientBreedDescription": X,
    "PersonName": X,
    "InsurancePlanIdentification": X,
    # --- patient characteristics (Retain Patient Characteristics option) -----------------
    "PatientSex": K,
    "PatientAge": K,
    "PatientSize": K,
    "PatientWeight": K,
    "PregnancyStatus": K,
    "SmokingStatus": K,
    "PatientSexNeutered": K,
    # Annex E keeps Ethnic Group under this option; removed here: synthmed never conditions on it
    # and on small cohorts it singles people out.
    "EthnicGroup": X,
    "Occupation": X,  # C in the option; free text
    "AdditionalPatientHistory": X,  # C; free text
    "MedicalAlerts": X,  # C; free text
    "Allergies": X,  # C; free text
    "SpecialNeeds": X,
    "PatientState": X,
    "LastMenstrualDate": X,
    # --- dates (Retain Longitudinal ... Modified Dates option): shifted -----------------
    "StudyDate": C,
    "SeriesDate": C,
    "AcquisitionDate": C,
    "ContentDate": C,
    "InstanceCreationDate": C,
    "AcquisitionDateTime": C,
    "PerformedProcedureStepStartDate": C,
    "PerformedProcedureStepEndDate": C,
    "ScheduledProcedureStepStartDate": C,
    "ScheduledProcedureStepEndDate": C,
    "IssueDateOfImagingServiceRequest": C,
    "AdmittingDate": C,
    "DateOfLastCalibration": C,
    "DateOfSecondaryCapture": C,
    "OverlayDate": C,
    "CurveDate": C,
    # --- staff -------------------------------------------------------------------------
    "ReferringPhysicianName": Z,
    "ReferringPhysicianAddress": X,
    "ReferringPhysicianTelephoneNumbers": X,
    "ReferringPhysicianIdentificationSequence": X,
    "PhysiciansOfRecord": X,
    "PhysiciansOfRecordIdentificationSequence": X,
    "PerformingPhysicianName": X,
    "PerformingPhysicianIdentificationSequence": X,
    "NameOfPhysiciansReadingStudy": X,
    "PhysiciansReadingStudyIdentificationSequence": X,
    "OperatorsName": X,
    "OperatorIdentificationSequence": X,
    "RequestingPhysician": X,
    "RequestingPhysicianIdentificationSequence": X,
    "ScheduledPerformingPhysicianName": X,
    "ScheduledPerformingPhysicianIdentificationSequence": X,
    "OrderEnteredBy": X,
    "OrderEntererLocation": X,
    "OrderCallbackPhoneNumber": X,
    "OrderCallbackTelecomInformation": X,
    "ReviewerName": X,
    "VerifyingObserverName": Z,
    "VerifyingOrganization": X,
    "ContentCreatorName": Z,
    "PersonIdentificationCodeSequence": X,
    # --- institution and device ----------------------------------------------------------
    "InstitutionName": X,
    "InstitutionAddress": X,
    "InstitutionalDepartmentName": X,
    "InstitutionCodeSequence": X,
    "InstitutionalDepartmentTypeCodeSequence": X,
    "StationName": X,
    "DeviceSerialNumber": X,
    "DeviceUID": U,
    "DetectorID": X,
    "PlateID": X,
    "GantryID": X,
    "CassetteID": X,
    "GeneratorID": X,
    "SoftwareVersions": X,  # K only under the Retain Device Identity option (not used)
    "SecondaryCaptureDeviceID": X,
    "PerformedStationAETitle": X,
    "PerformedStationName": X,
    "PerformedLocation": X,
    "ScheduledStationAETitle": X,
    "ScheduledStationName": X,
    "ScheduledProcedureStepLocation": X,
    "SourceApplicationEntityTitle": X,
    "ScheduledStudyLocation": X,
    "ScheduledStudyLocationAETitle": X,
    "CurrentPatientLocation": X,
    "PatientInstitutionResidence": X,
    "AdmissionID": X,
    "IssuerOfAdmissionIDSequence": X,
    # --- study / visit / request ---------------------------------------------------------
    "AccessionNumber": Z,
    "IssuerOfAccessionNumberSequence": X,
    "StudyID": Z,
    "StudyDescription": X,
    "SeriesDescription": X,
    "ProtocolName": X,  # C; free text
    "AdmittingDiagnosesDescription": X,
    "AdmittingDiagnosesCodeSequence": X,
    "ReasonForStudy": X,
    "RequestedProcedureDescription": X,
    "RequestedProcedureID": X,
    "RequestedProcedureComments": X,
    "RequestedProcedureLocation": X,
    "ReasonForTheRequestedProcedure": X,
    "RequestingService": X,
    "RequestedContrastAgent": X,
    "ReasonForTheImagingServiceRequest": X,
    "ImagingServiceRequestComments": X,
    "PlacerOrderNumberImagingServiceRequest": X,
    "FillerOrderNumberImagingServiceRequest": X,
    "RequestAttributesSequence": X,
    # Coded procedure descriptions repeat the free-text ones (C under Clean Descriptors, not used).
    "ProcedureCodeSequence": X,
    "RequestedProcedureCodeSequence": X,
    "PerformedProtocolCodeSequence": X,
    "ScheduledProtocolCodeSequence": X,
    "ReasonForRequestedProcedureCodeSequence": X,
    "AnatomicRegionSequence": K,
    "PerformedProcedureStepID": X,
    "PerformedProcedureStepDescription": X,
    "CommentsOnThePerformedProcedureStep": X,
    "ScheduledProcedureStepID": X,
    "ScheduledProcedureStepDescription": X,
    "StudyComments": X,
    "InterpretationAuthor": X,
    "ImageComments": X,
    "FrameComments": X,
    "DerivationDescription": X,
    "AcquisitionComments": X,
    "ContrastBolusAgent": K,
    "VisitComments": X,
    "ServiceEpisodeDescription": X,
    "ServiceEpisodeID": X,
    "TextString": X,
    "TextValue": X,
    "ModifiedAttributesSequence": X,
    "OriginalAttributesSequence": X,
    "DigitalSignaturesSequence": X,
    "DataSetTrailingPadding": X,
    # --- UIDs (every other non-registered UID is replaced by the generic rule as well) --------
    "StudyInstanceUID": U,
    "SeriesInstanceUID": U,
    "SOPInstanceUID": U,
    "MediaStorageSOPInstanceUID": U,
    "FrameOfReferenceUID": U,
    "SynchronizationFrameOfReferenceUID": U,
    "ReferencedSOPInstanceUID": U,
    "ReferencedFrameOfReferenceUID": U,
    "InstanceCreatorUID": U,
    "IrradiationEventUID": U,
    "ConcatenationUID": U,
    "DimensionOrganizationUID": U,
    "StorageMediaFileSetUID": U,
    "TransactionUID": U,
    "FiducialUID": U,
    "TargetUID": U,
    "UID": U,
    # SOP classes and transfer syntaxes name a standard (or a vendor's class), not a patient or a
    # site, and readers need them; kept even when they are private, unregistered UIDs.
    "SOPClassUID": K,
    "MediaStorageSOPClassUID": K,
    "ReferencedSOPClassUID": K,
    "ReferencedSOPClassUIDInFile": K,
    "TransferSyntaxUID": K,
    "ReferencedTransferSyntaxUIDInFile": K,
    # --- kept on purpose (text in the identity groups that the generic rule would drop) ---
    "Manufacturer": K,
    "ManufacturerModelName": K,
    "SpecificCharacterSet": K,
    "CodeValue": K,
    "CodingSchemeDesignator": K,
    "CodingSchemeVersion": K,
    "CodeMeaning": K,
    "LongCodeValue": K,
    "MappingResource": K,
    "ContextIdentifier": K,
    "ContextGroupVersion": K,
    "ContextGroupExtensionCreatorUID": K,
    "LUTLabel": K,
    "PatientIdentityRemoved": K,
    "DeidentificationMethod": K,
    "LongitudinalTemporalInformationModified": K,
    "BurnedInAnnotation": K,
    "RecognizableVisualFeatures": K,
    "ImplementationVersionName": K,
}

# Groups whose free-text elements are removed unless listed above (PS3.6 group meanings):
# 0x0008 identifying/study, 0x0010 patient, 0x0032 study request, 0x0038 visit, 0x0040 procedure
# step and request, 0x4008 results. Technical groups (0x0018 acquisition, 0x0020 relationship,
# 0x0028 image pixel) keep their text: it describes the scanner settings, not the person.
TEXT_SCRUB_GROUPS = frozenset({0x0008, 0x0010, 0x0032, 0x0038, 0x0040, 0x4008})
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "UN"})

GENERIC_RULES = (
    "remove every private element (odd group) and every private sequence, at every depth",
    "remove curve (50xx) and overlay (60xx) groups, including overlay comments",
    "replace every UI value that is not a registered DICOM UID with a keyed UID under 2.25",
    "shift every DA value, and the date part of every DT value, by the per-patient offset; keep TM",
    "remove every PN and AE value not on the table",
    "remove free-text values (LO/SH/ST/LT/UT/UC/UN) not on the table in groups "
    "0008, 0010, 0032, 0038, 0040, 4008",
    "recurse into every sequence item with the same rules",
    "if PatientAge is missing, compute it from birth date and study date before removing the birth date",
)
